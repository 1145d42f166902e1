"""Band statistics: streamed equals stacked, invalid pixels left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ls.training.datasets import FolderPairs, band_stats, open_dataset
from tests.training import fakes


def test_band_stats_streams_to_the_stacked_answer(hokkaido: FolderPairs) -> None:
    idx = [0, 3, 7, 11]
    mean, std = band_stats(hokkaido, idx)
    stack = np.concatenate([hokkaido[i].image.reshape(-1, 3) for i in idx]).astype(np.float64)
    np.testing.assert_allclose(mean, stack.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, stack.std(axis=0), rtol=1e-9)
    other = band_stats(hokkaido, [1, 2])[0]
    assert not np.allclose(mean, other)  # only the given (training) indices count


def test_band_stats_ignore_invalid_pixels(tmp_path: Path, geotiffs: Path) -> None:
    ds = open_dataset(fakes.gdcld_style(tmp_path, geotiffs / "rasterio" / "RGB.byte.tif"))
    s = ds[0]
    mean, _ = band_stats(ds, [0])
    np.testing.assert_allclose(mean, s.image[s.valid].astype(np.float64).mean(axis=0), rtol=1e-9)
