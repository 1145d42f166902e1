from __future__ import annotations

import json

import numpy as np
import pytest

from edge_ls.artifact import read_spec
from edge_ls.errors import ConfigError, ModelError

torch = pytest.importorskip("torch")

from edge_ls.export.onnx_export import export_onnx, parity_max_diff, run_onnx  # noqa: E402


def test_export_matches_pytorch_on_real_tiles(fp32_onnx, unet, real_tiles, spec):
    assert parity_max_diff(fp32_onnx, unet, real_tiles) < 1e-3
    got = read_spec(fp32_onnx)
    assert got.name == spec.name and got.bands == spec.bands and got.mean == spec.mean
    assert got.precision == "fp32"
    parity = got.provenance["export"]["parity"]
    assert parity["sample"] == "real tiles" and parity["max_abs_diff"] < 1e-3
    assert got.provenance["kind"] == "test"  # the trainer's provenance is kept


def test_graph_is_opset17_and_simplified(fp32_onnx):
    import onnx

    proto = onnx.load(str(fp32_onnx))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in proto.graph.node}
    assert "Conv" in ops and "Identity" not in ops
    assert "BatchNormalization" not in ops  # folded into the convs


@pytest.mark.parametrize(("batch", "size"), [(1, 256), (4, 64), (2, 96)])
def test_dynamic_batch_and_tile_size(fp32_onnx, unet, batch, size):
    x = np.random.default_rng(batch).standard_normal((batch, 3, size, size)).astype(np.float32)
    assert run_onnx(fp32_onnx, x).shape == (batch, 1, size, size)
    assert parity_max_diff(fp32_onnx, unet, x) < 1e-3


@pytest.mark.parametrize("size", [512, 768])
def test_profile_tile_sizes(fp32_onnx, unet, size):
    x = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
    assert parity_max_diff(fp32_onnx, unet, x) < 1e-3


def test_parity_failure_raises_with_the_difference(tmp_path, unet, real_tiles, spec):
    # A model whose ONNX graph cannot reproduce PyTorch: atol 0 (and rtol 0) is beyond float32 reach.
    with pytest.raises(ModelError, match=r"max \|diff\|"):
        export_onnx(unet, spec, tmp_path / "m.onnx", sample=real_tiles[:1], atol=0.0, rtol=0.0)


def test_parity_catches_a_shape_baked_into_the_graph(tmp_path, real_tiles, spec):
    """A forward that turns a traced size into a constant must fail the dynamic-shape check."""

    class BakedSize(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 1, 3, padding=1, stride=2)

        def forward(self, x):
            h, w = int(x.shape[2]), int(x.shape[3])  # python ints: traced as constants
            return torch.nn.functional.interpolate(self.conv(x), size=(h, w), mode="bilinear")

    with pytest.raises(ModelError, match="shape"):
        export_onnx(BakedSize(), spec, tmp_path / "b.onnx", sample=real_tiles[:2])


def test_bad_output_shape_and_bad_sample(tmp_path, unet, real_tiles, spec):
    two_channels = torch.nn.Conv2d(3, 2, 1)
    with pytest.raises(ModelError, match="N x 1 x H x W"):
        export_onnx(two_channels, spec, tmp_path / "x.onnx", sample=real_tiles[:1])
    with pytest.raises(ConfigError, match="N x 3 x H x W"):
        export_onnx(unet, spec, tmp_path / "y.onnx", sample=real_tiles[:1, :2])


def test_without_sample_the_provenance_says_synthetic(tmp_path, spec):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 1, 1))
    path = export_onnx(net, spec, tmp_path / "s.onnx")
    meta = json.loads(read_spec(path).to_json())
    assert meta["provenance"]["export"]["parity"]["sample"] == "synthetic noise"
