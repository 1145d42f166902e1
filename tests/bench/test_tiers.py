"""bench/tiers.py's measuring step on a small exported model: figures present and sane, cascade routing."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, real_data):
    import torch

    from edge_ls.artifact import ModelSpec
    from edge_ls.export.onnx_export import export_onnx
    from edge_ls.io.labelled import load_tiles

    spec = ModelSpec(
        name="t",
        tier="t",
        bands=("red", "green", "blue"),
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        input_range="8bit",
        gsd_m=1.0,
        tile_size=512,
        overlap=0.2,
        activation="logits",
        threshold=0.5,
    )
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1))
    sample = load_tiles(real_data / "cas_hokkaido", spec, size=64, limit=1)
    return str(export_onnx(net.eval(), spec, tmp_path_factory.mktemp("b") / "t.onnx", sample=sample))


def test_measure_single_and_cascade(small_onnx):
    from bench.tiers import measure

    args = {"tile": 512, "batch": 2, "threads": 1, "eval_tiles": 1, "min_seconds": 0.0}
    one = measure({**args, "files": {"primary": small_onnx}})
    assert one["tiles_per_s"] > 0 and one["peak_rss_mb"] > 10
    assert one["accuracy"]["tiles"] == 2 and set(one["accuracy"]["per_set"]) == {"cas_hokkaido", "bijie"}
    cascade = measure({**args, "files": {"triage": small_onnx, "refiner": small_onnx}})
    assert 0.0 <= cascade["roi_share"] <= 1.0
    assert cascade["ms_per_tile"] == pytest.approx(
        cascade["triage"]["ms_per_tile"] + cascade["roi_share"] * cascade["refiner"]["ms_per_tile"]
    )
    if cascade["roi_share"] == 1.0:  # every tile refined by the same model: same pixels as the single run
        assert cascade["accuracy"]["f1"] == pytest.approx(one["accuracy"]["f1"])


def test_split_folders_are_the_committed_split_in_eval_set_order(monkeypatch, tmp_path):
    """The train/val tiles a pruned trained model is distilled and calibrated on, as a labelled folder
    the export driver reads: exactly the split file's tiles, both sets, cas_hokkaido first."""
    import json

    import bench.tiers as tiers

    monkeypatch.setattr(tiers, "CACHE", tmp_path)
    names = json.loads(tiers.SPLIT_FILE.read_text())["splits"]
    for split in ("train", "val"):
        folder = tiers._split_folder(split)
        images = sorted((folder / "images").iterdir())
        linked = [f"{p.resolve().parent.parent.name}/{p.resolve().stem}" for p in images]
        assert sorted(linked) == sorted(names[split])
        assert linked == sorted(linked, key=lambda n: (tiers.EVAL_SETS.index(n.split("/")[0]), n))
        assert all((folder / "masks" / f"{p.stem}.png").resolve().is_file() for p in images)
        assert tiers._split_folder(split) == folder  # made once


def test_requests_come_from_the_profile_and_route_the_split(monkeypatch, tmp_path):
    import bench.tiers as tiers
    from edge_ls.profiles import load_profile

    monkeypatch.setattr(tiers, "CACHE", tmp_path)
    for tier in tiers.TIERS:
        assert (tiers.TIERS[tier]["tile"], tiers.TIERS[tier]["batch"]) == (
            load_profile(tier).tile,
            load_profile(tier).batch,
        )
    plain = tiers._request("edge-lite", "primary", tmp_path / "run", 512)
    assert plain.precision == ("fp32", "int8") and plain.prune is None and plain.fine_tune_data is None
    assert plain.calib == tiers.REAL / tiers.CALIB_SET and plain.tile_size == 512
    pruned = tiers._request("edge-lite", "primary", tmp_path / "run", 512, pruned=True, fine_tune_steps=3)
    assert pruned.prune == tiers.PRUNE_RATIO and pruned.round_to == tiers.ROUND_TO
    assert pruned.fine_tune_data == tiers._split_folder("train") and pruned.fine_tune_size == 256
    assert pruned.temperature_data == tiers._split_folder("val")


def test_build_only_builds_and_measures_nothing(monkeypatch, capsys):
    import bench.tiers as tiers

    built = []

    def fake_build(tier, role, family, tile, checkpoint, rebuild, log, prune=True):
        built.append((tier, role, checkpoint, prune))
        return {"family": family, "weights": "trained", "files": {"fp32": "/c/fp32.onnx"}}

    def no_measure(*args, **kwargs):
        raise AssertionError("--build-only must not measure")

    monkeypatch.setattr(tiers, "build_role", fake_build)
    monkeypatch.setattr(tiers, "run_measure", no_measure)
    assert (
        tiers.main(["--build-only", "--tiers", "edge-cascade", "--checkpoint", "edge-cascade:triage=runs/t"])
        == 0
    )
    assert [(t, r) for t, r, *_ in built] == [("edge-cascade", "triage"), ("edge-cascade", "refiner")]
    assert built[0][2] == "runs/t" and capsys.readouterr().out == ""


def test_pruned_variants_are_added_to_a_no_prune_build_without_redoing_it(monkeypatch, tmp_path):
    """A --no-prune build's FP32/INT8 files are reused when the pruned variants are asked for later."""
    import bench.tiers as tiers

    monkeypatch.setattr(tiers, "CACHE", tmp_path)
    logged: list[str] = []
    first = tiers.build_role(
        "edge-cascade", "triage", "cascade_triage", 512, None, False, logged.append, prune=False
    )
    assert set(first["files"]) == {"fp32", "int8"}
    stamps = {v: Path(first["files"][v]).stat().st_mtime_ns for v in ("fp32", "int8")}
    second = tiers.build_role("edge-cascade", "triage", "cascade_triage", 512, None, False, logged.append)
    assert set(second["files"]) == set(tiers.VARIANTS) and "prune_error" not in second
    assert all(Path(f).is_file() for f in second["files"].values())
    assert {v: Path(second["files"][v]).stat().st_mtime_ns for v in stamps} == stamps  # not rebuilt
    assert any("reused" in line for line in logged)
