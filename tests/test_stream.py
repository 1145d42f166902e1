"""The stream refuses model output it cannot trust: NaN/inf or a shape outside the contract is a
:class:`ModelError` naming the model and the first bad tile, never "no landslides" with exit 0."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from edge_ls.errors import ModelError
from edge_ls.pipeline import detect
from tests.hostile import conv_model, tiny_raster


@pytest.mark.parametrize("bias", [math.nan, math.inf, -math.inf])
def test_non_finite_model_output_is_a_model_error(tmp_path: Path, bias: float) -> None:
    scene = tiny_raster(tmp_path / "scene.tif")
    model = conv_model(tmp_path / "nanmodel.onnx", bias=bias)
    with pytest.raises(ModelError, match=r"nanmodel.*(NaN|inf).*tile \d+ at col"):
        detect(scene, model, tmp_path / "out")
    assert not (tmp_path / "out" / "report.json").exists()


@pytest.mark.parametrize(
    ("kw", "what"),
    [
        ({"out_channels": 2}, "output"),  # N x 2 x H x W
        ({"stride": 2}, "output"),  # N x 1 x H/2 x W/2
        ({"in_channels": 4}, "input"),  # wants 4 bands, its metadata says 3
    ],
)
def test_model_whose_shape_does_not_fit_is_a_model_error(tmp_path: Path, kw: dict, what: str) -> None:
    scene = tiny_raster(tmp_path / "scene.tif")
    model = conv_model(tmp_path / "badshape.onnx", **kw)
    with pytest.raises(ModelError, match=rf"badshape.*{what}"):
        detect(scene, model, tmp_path / "out")


def test_a_fitting_tiny_model_runs(tmp_path: Path) -> None:
    """The control: the same tiny model with a finite bias runs and writes its report."""
    scene = tiny_raster(tmp_path / "scene.tif")
    report = detect(scene, conv_model(tmp_path / "ok.onnx", bias=-1.0, weight=0.0), tmp_path / "out")
    assert report["tiles"] >= 1 and (tmp_path / "out" / "report.json").is_file()
