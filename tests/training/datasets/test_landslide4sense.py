"""Landslide4Sense HDF5: band choice and the reflectance scaling back from the authors' divisor."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from edge_ls.errors import ConfigError
from edge_ls.training.datasets import L4S_DIVISOR, Landslide4Sense, open_dataset
from tests.training import fakes


def test_landslide4sense_rgb_and_nir_bands_scaled_back_to_reflectance(
    tmp_path: Path, real_data: Path
) -> None:
    root = fakes.l4s_style(tmp_path, real_data, n=3)
    ds = open_dataset(root)
    assert isinstance(ds, Landslide4Sense) and len(ds) == 3 and ds.input_range == "reflectance"
    with h5py.File(root / "TrainData" / "img" / "image_31.h5") as f:
        raw = f["img"][()]
    s = ds[0]
    assert s.id == "l4s/image_31" and s.image.shape == (128, 128, 3)
    for c, band in enumerate((3, 2, 1)):  # RGB = B4, B3, B2
        want = np.clip(raw[..., band] * L4S_DIVISOR[band] / 10000.0, 0, 1).astype(np.float32)
        np.testing.assert_allclose(s.image[..., c], want, rtol=1e-6)
    # Raw red DN = value x 445.17: real Sentinel-2 reflectance of a few percent, not > 1.
    assert 0.01 < float(s.image[..., 0].mean()) < 0.3
    np.testing.assert_array_equal(s.mask, fakes.ndvi_mask(raw))
    nir = Landslide4Sense(root, bands=("B8", "slope", "dem"))
    assert nir.bands == ("nir", "slope", "dem")
    x = nir[0].image
    np.testing.assert_allclose(x[..., 0], np.clip(raw[..., 7] * L4S_DIVISOR[7] / 1e4, 0, 1), rtol=1e-6)
    assert float((raw[..., 13] * L4S_DIVISOR[13]).max()) > 100  # DEM back in metres
    with pytest.raises(ConfigError, match="no band"):
        Landslide4Sense(root, bands=("red", "nir08"))
