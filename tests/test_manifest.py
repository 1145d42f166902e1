"""Runtime-side verification of tier folders: no torch; tiers built from the bundled edge-nano graph."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge_ls.errors import ModelError
from edge_ls.manifest import MANIFEST_FILE, load_manifest, model_filename, sha256_file
from edge_ls.models.registry import BUNDLED_DIR

NANO = BUNDLED_DIR / "edge-nano.onnx"


def _write_tier(root: Path) -> Path:
    """A tier folder by hand, exactly in the manifest format (keeps this test free of onnx/torch)."""
    import onnxruntime as ort

    folder = root / "edge-nano"
    folder.mkdir()
    file = model_filename("primary", "fp32")
    shutil.copyfile(NANO, folder / file)
    session = ort.InferenceSession(str(folder / file), providers=["CPUExecutionProvider"])
    spec = json.loads(session.get_modelmeta().custom_metadata_map["edge_ls"])
    digest = sha256_file(folder / file)
    manifest = {
        "schema_version": 1,
        "tier": "edge-nano",
        "default_precision": "fp32",
        "models": [
            {
                "role": "primary",
                "precision": "fp32",
                "file": file,
                "sha256": digest,
                "bytes": (folder / file).stat().st_size,
                "params": 9,
                "macs": 0,
                "flops_tile": 512,
                "accuracy": {},
                "metadata": spec,
            }
        ],
        "files": {file: digest},
        "info": {"note": "test"},
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


def test_valid_tier_loads(tmp_path):
    m = load_manifest(_write_tier(tmp_path))
    assert m.tier == "edge-nano" and m.names() == ["edge-nano:fp32"]
    entry = m.model()
    assert entry.role == "primary" and entry.path.is_file() and entry.spec.name == "edge-nano"
    assert m.info["note"] == "test"
    with pytest.raises(ModelError, match="no primary model in int8"):
        m.model(precision="int8")


def test_tampered_file_is_named(tmp_path):
    folder = _write_tier(tmp_path)
    target = folder / model_filename("primary", "fp32")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"primary\.fp32\.onnx: sha256 does not match"):
        load_manifest(folder)


def test_missing_and_stray_files(tmp_path):
    folder = _write_tier(tmp_path)
    shutil.copyfile(NANO, folder / "extra.onnx")
    with pytest.raises(ModelError, match=r"extra\.onnx: ONNX file not listed"):
        load_manifest(folder)
    (folder / "extra.onnx").unlink()
    (folder / model_filename("primary", "fp32")).unlink()
    with pytest.raises(ModelError, match="missing"):
        load_manifest(folder)


def test_edited_metadata_in_manifest_is_refused(tmp_path):
    folder = _write_tier(tmp_path)
    path = folder / MANIFEST_FILE
    data = json.loads(path.read_text())
    data["models"][0]["metadata"]["threshold"] = 0.2  # the file still says 0.5
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="metadata differs"):
        load_manifest(folder)
    data["models"][0]["precision"] = "int8"
    path.write_text(json.dumps(data))
    with pytest.raises(ModelError, match="metadata says fp32, manifest says int8"):
        load_manifest(folder)


def test_not_a_tier_and_bad_json(tmp_path):
    with pytest.raises(ModelError, match=r"manifest\.json is missing"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="unreadable manifest"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps({"schema_version": 9}))
    with pytest.raises(ModelError, match="schema_version 9 unsupported"):
        load_manifest(tmp_path)


def test_manifest_module_never_imports_torch():
    import subprocess
    import sys

    code = "import sys, edge_ls.manifest; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_resolve_tier_model_by_name(tmp_path):
    from edge_ls.manifest import resolve_tier_model, split_name, tier_folders

    _write_tier(tmp_path)
    assert split_name("edge-lite:int8") == ("edge-lite", "int8") and split_name("x") == ("x", None)
    assert tier_folders(tmp_path) == [tmp_path / "edge-nano"]
    entry = resolve_tier_model(tmp_path, "edge-nano:fp32")
    assert entry is not None and entry.path.name == "primary.fp32.onnx"
    assert resolve_tier_model(tmp_path, "edge-nano").precision == "fp32"  # the default precision
    assert resolve_tier_model(tmp_path, "unknown:int8") is None
    with pytest.raises(ModelError, match="no primary model in int8"):
        resolve_tier_model(tmp_path, "edge-nano:int8")
