"""Scenes far outside the model's trained GSD range: read at the nearest trained GSD, outputs on the
scene's own grid (the sample scene, and a UAV-like 0.2 m copy of part of it)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from rasterio.enums import Resampling

from edge_ls.artifact import read_spec, write_spec
from edge_ls.io import resample
from edge_ls.models.registry import resolve
from edge_ls.pipeline import DetectOptions, detect

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "examples" / "chattogram_s2.tif"


@pytest.fixture(scope="module")
def ranged_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Edge-Lite's network with a trained range of 0.5-12 m in its metadata."""
    src = resolve("edge-lite")
    proto = onnx.load(str(src))
    write_spec(proto, replace(read_spec(src), gsd_m=3.0, gsd_range_m=(0.5, 12.0)))
    out = tmp_path_factory.mktemp("ranged") / "ranged.onnx"
    onnx.save(proto, str(out))
    return out


def _zoomed_copy(out: Path, factor: int, size: int = 48) -> Path:
    """A ``size`` x ``size`` window of the sample scene enlarged ``factor`` times (finer GSD)."""
    with rasterio.open(SCENE) as src:
        window = rasterio.windows.Window(700, 300, size, size)
        data = src.read(
            window=window, out_shape=(src.count, size * factor, size * factor), resampling=Resampling.bilinear
        )
        profile = src.profile | {
            "width": size * factor,
            "height": size * factor,
            "transform": src.window_transform(window) * rasterio.Affine.scale(1 / factor),
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
        }
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(data)
            dst.colorinterp = src.colorinterp
            dst.descriptions = src.descriptions
    return out


def test_read_gsd_only_far_outside_the_trained_range(ranged_model: Path) -> None:
    spec = read_spec(ranged_model)
    assert resample.read_gsd(10.0, spec) is None  # inside
    assert resample.read_gsd(0.4, spec) is None  # within the tolerance of 0.5
    assert resample.read_gsd(0.1, spec) == 0.5  # UAV: the finest trained GSD
    assert resample.read_gsd(30.0, spec) == 12.0  # Landsat: the coarsest
    assert resample.read_gsd(0.1, spec, enabled=False) is None
    assert resample.read_gsd(None, spec) is None  # no georeference: nothing to compare
    assert resample.read_gsd(0.1, replace(spec, gsd_range_m=None)) is None  # models of one GSD


def test_to_scene_keeps_nodata_and_range() -> None:
    prob = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    p, v = resample.to_scene(prob, valid, 20, 20)
    assert p.shape == v.shape == (20, 20) and p.min() >= 0 and p.max() <= 1
    assert not v[:5, :5].any() and v[5:, 5:].all()


def test_uav_like_scene_is_read_at_a_trained_gsd_and_written_on_its_grid(
    ranged_model: Path, tmp_path: Path
) -> None:
    uav = _zoomed_copy(tmp_path / "uav.tif", factor=50)  # ~10 m -> ~0.2 m, 2400 x 2400 px
    report = detect(uav, ranged_model, tmp_path / "out", DetectOptions())
    assert report["resampled"] is True and report["read_gsd_m"] == pytest.approx(0.5)
    # one warning says what was done, none that the detections are unreliable (they were read at 0.5 m)
    gsd_lines = [w for w in report["warnings"] if "GSD" in w]
    assert len(gsd_lines) == 1 and "read at 0.5 m" in gsd_lines[0] and "unreliable" not in gsd_lines[0]
    with rasterio.open(uav) as src, rasterio.open(tmp_path / "out" / "probability.tif") as prob:
        assert (prob.width, prob.height, prob.transform) == (src.width, src.height, src.transform)
        fine = prob.read(1).astype(np.float32)
    # the same ground read by hand at 0.5 m (a 960 px copy): same detections, up to interpolation
    half = _zoomed_copy(tmp_path / "half.tif", factor=20)
    detect(half, ranged_model, tmp_path / "ref", DetectOptions())
    with rasterio.open(tmp_path / "ref" / "probability.tif") as ref:
        coarse = ref.read(1, out_shape=fine.shape, resampling=Resampling.bilinear).astype(np.float32)
    assert np.corrcoef(fine.ravel(), coarse.ravel())[0, 1] > 0.9
    assert abs(fine.mean() - coarse.mean()) < 5  # percent units


def test_no_resample_reads_the_scene_as_it_is(ranged_model: Path, tmp_path: Path) -> None:
    uav = _zoomed_copy(tmp_path / "uav.tif", factor=12, size=64)  # ~0.8 m, inside: read as is
    report = detect(uav, ranged_model, tmp_path / "a", DetectOptions())
    assert report["resampled"] is False
    far = _zoomed_copy(tmp_path / "far.tif", factor=40, size=32)  # ~0.25 m, outside the range
    report = detect(far, ranged_model, tmp_path / "b", DetectOptions(resample=False))
    assert report["resampled"] is False and report["read_gsd_m"] == pytest.approx(0.25, rel=0.05)


def test_sample_scene_at_its_own_gsd_is_untouched(ranged_model: Path, tmp_path: Path) -> None:
    report = detect(SCENE, ranged_model, tmp_path / "out", DetectOptions())
    assert report["resampled"] is False and 8 < report["read_gsd_m"] < 12


def test_no_resample_far_outside_the_range_warns_and_says_how_to_fix_it(
    ranged_model: Path, tmp_path: Path
) -> None:
    far = _zoomed_copy(tmp_path / "far.tif", factor=60, size=16)  # ~0.16 m: beyond half of 0.5 m
    report = detect(far, ranged_model, tmp_path / "out", DetectOptions(resample=False))
    assert report["resampled"] is False
    (line,) = [w for w in report["warnings"] if "GSD" in w]
    assert "far from the 0.5-12 m model" in line and "without --no-resample" in line
