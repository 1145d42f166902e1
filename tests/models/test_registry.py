from pathlib import Path

import pytest

from edge_ls.errors import ModelError
from edge_ls.models.registry import DEFAULT_MODEL, bundled_names, list_bundled, resolve


def test_default_and_names_resolve_to_bundled_files() -> None:
    assert resolve("default") == resolve(DEFAULT_MODEL)
    assert "edge-nano" in bundled_names()
    assert resolve("edge-nano:fp32") == resolve("edge-nano")
    assert all(m.spec.name for m in list_bundled())


def test_a_path_wins_over_names(tmp_path: Path) -> None:
    copy = tmp_path / "edge-nano.onnx"
    copy.write_bytes(resolve("edge-nano").read_bytes())
    assert resolve(copy) == copy


def test_unknown_names_and_missing_paths_are_clear() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'nope'.*edge-nano"):
        resolve("nope")
    with pytest.raises(ModelError, match="model file not found"):
        resolve("missing/model.onnx")
    with pytest.raises(ModelError, match="unknown model 'edge-nano:int8'"):
        resolve("edge-nano:int8")  # edge-nano exists only in fp32


def test_a_tier_folder_path_resolves_after_verification(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from edge_ls.export.tier import build_tier

    folder = build_tier("nano-tier", {"primary": resolve("edge-nano")}, tmp_path)
    path = resolve(folder)
    assert path.parent == folder and path.suffix == ".onnx"
    path.write_bytes(path.read_bytes() + b"\0")  # tampered after packaging
    with pytest.raises(ModelError, match=path.name):
        resolve(folder)


def test_bundled_int8_tier_resolves_verified() -> None:
    from edge_ls.artifact import read_spec

    path = resolve("edge-lite:int8")
    assert path.parent.name == "edge-lite" and read_spec(path).precision == "int8"
    assert "edge-lite:int8" in bundled_names()
    assert read_spec(resolve("default")).precision == "fp32"


def test_tiers_in_the_user_folder_resolve_by_name_after_bundled_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnx")
    from edge_ls.export.tier import build_tier

    user = tmp_path / "user"
    monkeypatch.setenv("EDGE_LS_MODELS", str(user))
    folder = build_tier("big-tier", {"primary": resolve("edge-nano")}, user)
    names = bundled_names()
    assert "big-tier:fp32" in names and names.index("edge-nano") < names.index("big-tier:fp32")
    assert resolve("big-tier:fp32").parent == folder
    assert "big-tier:fp32" in {m.name for m in list_bundled()}
    # a bundled name is never shadowed by the user's folder
    (user / "edge-nano.onnx").write_bytes(b"not onnx")
    assert resolve("edge-nano").parent != user


def test_a_damaged_user_tier_is_refused_by_name_and_skipped_in_the_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnx")
    from edge_ls.export.tier import build_tier

    monkeypatch.setenv("EDGE_LS_MODELS", str(tmp_path))
    folder = build_tier("bad-tier", {"primary": resolve("edge-nano")}, tmp_path)
    model = next(folder.glob("*.onnx"))
    model.write_bytes(model.read_bytes() + b"\0")
    with pytest.raises(ModelError, match=model.name):
        resolve("bad-tier:fp32")
    assert "bad-tier:fp32" not in {m.name for m in list_bundled()}


def test_a_cascade_names_its_triage_and_refiner_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``edge-cascade:triage:int8`` and ``...:refiner:...`` are two names for two files; the tier name
    alone (and ``tier:precision``) is the triage, the model a cascade starts with."""
    pytest.importorskip("onnx")
    from edge_ls.export.tier import build_tier
    from edge_ls.models.registry import display_name

    monkeypatch.setenv("EDGE_LS_MODELS", str(tmp_path))
    nano, lite = resolve("edge-nano"), resolve("default")
    build_tier("casc", {"triage": nano, "refiner": lite}, tmp_path)
    names = bundled_names()
    assert {"casc:triage:fp32", "casc:refiner:fp32"} <= set(names) and "casc:fp32" not in names
    triage, refiner = resolve("casc:triage:fp32"), resolve("casc:refiner:fp32")
    assert triage != refiner and triage.read_bytes() == nano.read_bytes()
    assert refiner.read_bytes() == lite.read_bytes()
    assert resolve("casc:fp32") == resolve("casc") == triage
    assert resolve("casc:fp32", "refiner") == refiner  # a profile's role still works
    listed = {m.name: m.path for m in list_bundled()}
    assert listed["casc:triage:fp32"] == triage and listed["casc:refiner:fp32"] == refiner
    # Reports name what ran by its registry name, not by the training run's model name.
    assert display_name("casc:refiner:fp32", refiner) == "casc:refiner:fp32"
    assert display_name("casc", triage) == "casc:triage:fp32"
    assert display_name(str(nano), nano) is None
    with pytest.raises(ModelError, match="names the triage model"):
        resolve("casc:triage:fp32", "refiner")


def test_one_broken_user_model_does_not_hide_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A garbage ``.onnx`` (or one without edge-ls metadata) beside good models used to hide every
    user model from ``edge-ls models``; now the others are listed and the broken one says why."""
    pytest.importorskip("onnx")
    from edge_ls.cli import main
    from edge_ls.models.registry import list_models
    from tests.hostile import conv_model

    monkeypatch.setenv("EDGE_LS_MODELS", str(tmp_path))
    (tmp_path / "aaa-broken.onnx").write_bytes(b"this is not onnx")
    conv_model(tmp_path / "bbb-nometa.onnx", metadata="")
    (tmp_path / "zzz-good.onnx").write_bytes(resolve("edge-nano").read_bytes())
    models, broken = list_models()
    assert "zzz-good" in {m.name for m in models}
    assert {b.path.name for b in broken} == {"aaa-broken.onnx", "bbb-nometa.onnx"}
    assert all(b.reason and "\n" not in b.reason for b in broken)
    assert "zzz-good" in {m.name for m in list_bundled()}
    assert "zzz-good" in bundled_names()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "zzz-good" in out and "aaa-broken.onnx" in out and "no edge-ls metadata" in out
