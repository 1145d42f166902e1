from __future__ import annotations

import json

import pytest

from edge_ls.errors import ConfigError, ModelError

pytest.importorskip("torch")

from edge_ls.export.tier import build_tier
from edge_ls.manifest import MANIFEST_FILE, load_manifest


@pytest.fixture(scope="module")
def int8_copy(tmp_path_factory, fp32_onnx, real_tiles):
    from edge_ls.export.quantize import quantize_int8

    return quantize_int8(fp32_onnx, tmp_path_factory.mktemp("qt") / "q.onnx", [real_tiles[:2]])


def test_tier_folder_with_manifest(tmp_path, fp32_onnx, int8_copy):
    folder = build_tier("edge-lite", {"primary": [fp32_onnx, int8_copy]}, tmp_path, {"pruned": 0.0})
    names = sorted(p.name for p in folder.iterdir())
    assert names == [MANIFEST_FILE, "primary.fp32.onnx", "primary.int8.onnx"]
    m = load_manifest(folder)
    assert m.names() == ["edge-lite:fp32", "edge-lite:int8"] and m.default_precision == "int8"
    fp32, int8 = m.model(precision="fp32"), m.model(precision="int8")
    assert fp32.params and fp32.macs and fp32.flops_tile == 128
    assert int8.macs == fp32.macs and abs(int8.params - fp32.params) < 0.02 * fp32.params
    assert m.info == {"pruned": 0.0}
    raw = json.loads((folder / MANIFEST_FILE).read_text())
    assert set(raw["files"]) == {"primary.fp32.onnx", "primary.int8.onnx"}


def test_cascade_roles_and_rebuild_replaces(tmp_path, fp32_onnx, int8_copy):
    folder = build_tier("edge-cascade", {"triage": int8_copy, "refiner": fp32_onnx}, tmp_path)
    m = load_manifest(folder)
    assert m.is_cascade and m.model().role == "triage"
    assert m.model("refiner", "fp32").path.is_file()
    folder = build_tier("edge-cascade", {"triage": fp32_onnx}, tmp_path, default_precision="fp32")
    assert load_manifest(folder).roles == ["triage"]


def test_tier_errors(tmp_path, fp32_onnx):
    with pytest.raises(ConfigError, match="unknown model role"):
        build_tier("t", {"head": fp32_onnx}, tmp_path)
    with pytest.raises(ConfigError, match="needs a 'triage'"):
        build_tier("t", {"refiner": fp32_onnx}, tmp_path)
    with pytest.raises(ConfigError, match="two primary models in fp32"):
        build_tier("t", {"primary": [fp32_onnx, fp32_onnx]}, tmp_path)
    with pytest.raises(ConfigError, match="not among the built"):
        build_tier("t", {"primary": fp32_onnx}, tmp_path, default_precision="int8")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    with pytest.raises(ModelError, match=r"bad\.onnx"):
        build_tier("t", {"primary": bad}, tmp_path)
