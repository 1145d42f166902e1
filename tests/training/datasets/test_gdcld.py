"""GDCLD-style GeoTIFF pairs: nodata as invalid, the runtime's reflectance rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import rasterio

from edge_ls.training.datasets import GDCLDPairs, open_dataset
from tests.training import fakes


def test_gdcld_geotiff_pairs_keep_nodata_as_invalid(tmp_path: Path, geotiffs: Path) -> None:
    src = geotiffs / "rasterio" / "RGB.byte.tif"  # nodata 0 collar
    root = fakes.gdcld_style(tmp_path, src, size=256, events=("ev1",))
    ds = open_dataset(root)
    assert isinstance(ds, GDCLDPairs) and len(ds) == 6
    s = ds[0]
    with rasterio.open(src) as f:
        raw = np.moveaxis(f.read(window=((0, 256), (0, 256))), 0, -1)
    nodata = (raw == 0).any(axis=-1)  # the runtime: invalid where any selected band is nodata
    assert nodata.any() and s.valid is not None
    np.testing.assert_array_equal(s.valid, ~nodata)
    np.testing.assert_allclose(s.image[~nodata], raw[~nodata].astype(np.float32) / 255.0, atol=1e-7)
    assert (s.image[nodata] == 0).all()


def test_uint16_geotiff_uses_the_runtime_reflectance_rule(tmp_path: Path, geotiffs: Path) -> None:
    src = geotiffs / "rio-tiler" / "scene_band1.tif"  # Sentinel-2 DN, uint16, nodata 0
    (tmp_path / "g" / "images").mkdir(parents=True)
    shutil.copy(src, tmp_path / "g" / "images" / "scene.tif")
    with rasterio.open(src) as f:
        raw = f.read(1)
    fakes.write_tiff(tmp_path / "g" / "masks" / "scene.tif", (raw > np.median(raw)).astype(np.uint8))
    ds = open_dataset(tmp_path / "g", bands=("gray",))
    assert isinstance(ds, GDCLDPairs) and ds.input_range == "reflectance"
    s = ds[0]
    valid = raw != 0
    assert s.valid is None or np.array_equal(s.valid, valid)
    want = np.clip(raw / 10000.0, 0, 1).astype(np.float32)
    np.testing.assert_allclose(s.image[..., 0][valid], want[valid], rtol=1e-6)
    assert 0.1 < float(s.image[..., 0][valid].mean()) < 0.8
    stretched = GDCLDPairs(tmp_path / "g", bands=("gray",), input_range="8bit")[0].image
    lo, hi = np.percentile(raw[valid], (2, 98))  # the runtime's 2-98 % stretch of non-8-bit data
    np.testing.assert_allclose(
        stretched[..., 0][valid], np.clip((raw[valid] - lo) / (hi - lo), 0, 1), atol=1e-5
    )
