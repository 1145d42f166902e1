"""``edge-ls export`` end to end on a small exported model and real CAS Hokkaido tiles."""

from __future__ import annotations

import subprocess
import sys

import pytest

from edge_ls.cli import main
from edge_ls.manifest import MANIFEST_FILE, load_manifest

pytest.importorskip("torch")


def test_onnx_to_int8_tier(tmp_path, fp32_onnx, hokkaido, capsys):
    code = main(
        [
            "export",
            "--onnx",
            str(fp32_onnx),
            "--tier",
            "lite-test",
            "--precision",
            "fp32,int8,fp16",
            "--calib",
            str(hokkaido),
            "--eval",
            str(hokkaido),
            "--calib-tiles",
            "4",
            "--eval-tiles",
            "4",
            "--tile-size",
            "128",
            "--budget",
            "100",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "calibration on tiles 0-17, evaluation on 18-35" in captured.err
    manifest = load_manifest(tmp_path / "lite-test")
    assert manifest.names() == ["lite-test:fp32", "lite-test:int8", "lite-test:fp16"]
    int8 = manifest.model(precision="int8")
    assert int8.accuracy["tiles"] == 4 and "delta_f1" in int8.accuracy
    fp32 = manifest.model(precision="fp32")
    assert fp32.accuracy["f1"] == pytest.approx(int8.accuracy["fp32"]["f1"]) and fp32.accuracy["tiles"] == 4
    q = int8.spec.provenance["quantization"]["calibration"]
    assert q["tiles"] == 4 and q["source"].endswith("cas_hokkaido[0:4]")
    assert manifest.info["budget_f1"] == 100
    assert "lite-test:int8" in captured.out


def test_every_artifact_names_its_tier_and_model_tile(tmp_path, fp32_onnx, hokkaido, capsys):
    """A large-tile tier of the same model: metadata says the tier folder's name and the new tile."""
    code = main(
        [
            "export",
            "--onnx",
            str(fp32_onnx),
            "--tier",
            "big-tiles",
            "--precision",
            "fp32",
            "--model-tile",
            "1024",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    entry = load_manifest(tmp_path / "big-tiles").model(precision="fp32")
    assert entry.spec.tier == "big-tiles" and entry.spec.tile_size == 1024
    code = main(
        [
            "export",
            "--onnx",
            str(fp32_onnx),
            "--tier",
            "odd",
            "--precision",
            "fp32",
            "--model-tile",
            "1000",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 2 and "multiple of 32" in capsys.readouterr().err
    assert not (tmp_path / "odd").exists()


def test_checkpoint_with_pruning(tmp_path, hokkaido, spec, capsys):
    """A training run folder (config.json, best.pt, spec.json) -> pruned FP32 + INT8 tier."""
    pytest.importorskip("torch")
    pytest.importorskip("edge_ls.training.trainer")
    from tests.export.conftest import untrained_run

    run = untrained_run(tmp_path / "run", [hokkaido], spec)
    code = main(
        [
            "export",
            "--checkpoint",
            str(run),
            "--tier",
            "pruned",
            "--precision",
            "fp32,int8",
            "--prune",
            "0.5",
            "--fine-tune-steps",
            "2",
            "--calib",
            str(hokkaido),
            "--eval",
            str(hokkaido),
            "--calib-tiles",
            "4",
            "--eval-tiles",
            "2",
            "--tile-size",
            "64",
            "--budget",
            "100",
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ]
    )
    assert code == 0, capsys.readouterr().err
    manifest = load_manifest(tmp_path / "out" / "pruned")
    prune = manifest.info["primary"]["prune"]
    assert prune["params_after"] < 0.5 * prune["params_before"] and prune["fine_tuned"]
    assert manifest.model(precision="fp32").params < prune["params_before"]
    assert manifest.model(precision="fp32").spec.provenance["export"]["parity"]["sample"] == "real tiles"
    # The student carries its own temperature, fitted on the fine-tuning tiles, in its spec.
    fitted = prune["temperature"]
    assert manifest.model(precision="fp32").spec.temperature == pytest.approx(fitted["student"])
    assert fitted["student"] != fitted["teacher"] and fitted["fit_on"].startswith("the --calib")


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["--precision", "int8", "--eval", "{data}"], 2, "int8 needs --calib"),
        (["--precision", "int8", "--calib", "{data}"], 2, "needs --eval"),
        (["--prune", "0.5"], 2, "--prune needs --checkpoint"),
        (["--prune", "1.5"], 2, "fraction of channels"),
        (["--budget", "-1"], 2, "--budget"),
        (["--precision", "fp32", "--calib", "{data}/nope"], 2, "dataset folder not found"),
    ],
)
def test_cli_argument_errors(tmp_path, fp32_onnx, hokkaido, capsys, argv, code, message):
    argv = [a.replace("{data}", str(hokkaido)) for a in argv]
    got = main(["export", "--onnx", str(fp32_onnx), "--tier", "t", "--out", str(tmp_path), "--quiet", *argv])
    assert got == code
    assert message in capsys.readouterr().err


def test_bad_onnx_is_a_model_error(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    got = main(["export", "--onnx", str(bad), "--tier", "t", "--precision", "fp32", "--out", str(tmp_path)])
    assert got == 3
    assert "bad.onnx is not a loadable ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "t" / MANIFEST_FILE).exists()


def test_missing_torch_names_the_extra(tmp_path):
    """With torch unavailable, exporting a checkpoint says which extra to install (exit code 5)."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edge_ls.cli import main\n"
        f"sys.exit(main(['export', '--checkpoint', {str(tmp_path)!r}, '--tier', 't', '--precision', 'fp32', "
        f"'--out', {str(tmp_path)!r}]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "pip install 'edge-ls[export]'" in proc.stderr and "torch" in proc.stderr


def test_budget_exceeded_fails_and_writes_no_tier(tmp_path, fp32_onnx, hokkaido, capsys, monkeypatch):
    """An INT8 model scoring 3 points under FP32 must fail the export (exit 3) and leave no tier."""
    import edge_ls.export.accuracy as accuracy

    real = accuracy.budget_scores

    def degraded(path, data, **kw):
        result = real(path, data, **kw)
        if "int8" in path.name:  # simulate a quantization that lost 3 F1 points
            result = {**result, "f1": result["f1"] - 3.0}
        return result

    monkeypatch.setattr(accuracy, "budget_scores", degraded)
    code = main(
        [
            "export",
            "--onnx",
            str(fp32_onnx),
            "--tier",
            "edge-lite",
            "--precision",
            "fp32,int8",
            "--calib",
            str(hokkaido),
            "--eval",
            str(hokkaido),
            "--calib-tiles",
            "2",
            "--eval-tiles",
            "2",
            "--tile-size",
            "128",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert "lost 3.00 F1 points" in err and "budget 1" in err  # edge-lite profile: 1 point
    assert not (tmp_path / "edge-lite").exists()
