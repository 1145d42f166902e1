"""Streamed overview levels: GDAL's own, bit for bit, from rows fed in any band height."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rasterio.errors import NotGeoreferencedWarning

from edge_ls.io.overviews import OverviewPyramid, axis_taps, overview_sizes
from tests.io.gdal_overviews import gdal_levels

warnings.filterwarnings("ignore", category=NotGeoreferencedWarning)


def streamed(
    values: np.ndarray, kind: str, nodata: float, bands: list[int], block: int = 512
) -> list[np.ndarray]:
    """Feed ``values`` in bands of the given heights (cycled) and assemble the levels from what comes back."""
    pyramid = OverviewPyramid(values.shape[1], values.shape[0], block=block, kind=kind, nodata=nodata)
    levels = [np.full((h, w), 77, values.dtype) for w, h in pyramid.sizes]
    written = [np.zeros(h, int) for _, h in pyramid.sizes]
    row, i = 0, 0
    while row < values.shape[0]:
        h = bands[i % len(bands)]
        for level, first, rows in pyramid.add(values[row : row + h]):
            levels[level][first : first + rows.shape[0]] = rows
            written[level][first : first + rows.shape[0]] += 1
        row, i = row + h, i + 1
    assert all((w == 1).all() for w in written), "each overview row comes back exactly once"
    return levels


def scene(shape: tuple[int, int], kind: str, dtype: str, seed: int) -> tuple[np.ndarray, float]:
    """Random values with scattered nodata and a nodata block (footprints with none valid)."""
    rng = np.random.default_rng(seed)
    if kind == "mode":
        values, nodata = (rng.random(shape) < 0.4).astype(np.uint8), 255
    elif dtype == "uint8":
        values, nodata = rng.integers(0, 101, shape).astype(np.uint8), 255
    else:
        values, nodata = rng.random(shape).astype(np.float32), -1.0
    values[rng.random(shape) < 0.2] = nodata
    values[:40, :40] = nodata
    return values, nodata


@pytest.mark.parametrize("shape", [(1024, 2048), (1030, 1543), (3001, 700), (600, 10), (1, 1030)])
@pytest.mark.parametrize(("kind", "dtype"), [("average", "uint8"), ("average", "float32"), ("mode", "uint8")])
def test_levels_equal_gdals_cog_overviews(shape, kind, dtype) -> None:
    values, nodata = scene(shape, kind, dtype, seed=sum(shape))
    ours = streamed(values, kind, nodata, bands=[37, 5, 64])
    theirs = gdal_levels(values, nodata, kind.upper())
    assert [o.shape for o in ours] == [t.shape for t in theirs] and ours
    for level, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        np.testing.assert_array_equal(o, t, err_msg=f"level {level}")


def test_band_height_does_not_change_the_levels() -> None:
    values, nodata = scene((1543, 1031), "average", "uint8", seed=3)
    one_by_one = streamed(values, "average", nodata, bands=[1])
    whole = streamed(values, "average", nodata, bands=[1543])
    for a, b in zip(one_by_one, whole, strict=True):
        np.testing.assert_array_equal(a, b)


def test_sizes_follow_gdals_cog_rule() -> None:
    assert overview_sizes(512, 512, 512) == []
    assert overview_sizes(513, 100, 512) == [(256, 50)]
    assert overview_sizes(4097, 3000, 512) == [(2048, 1500), (1024, 750), (512, 375)]
    assert overview_sizes(1030, 1, 512) == [(515, 1), (257, 1)]


def test_average_taps_weigh_the_part_of_each_pixel_inside_the_footprint() -> None:
    taps = axis_taps(5, 2, "average")  # pixel 0 covers [0, 2.5), pixel 1 [2.5, 5)
    np.testing.assert_array_equal(taps.index, [[0, 1, 2], [2, 3, 4]])
    np.testing.assert_allclose(taps.weight, [[1, 1, 0.5], [0.5, 1, 1]])
    assert axis_taps(8, 4, "mode").pairs and not taps.pairs


def test_refusals() -> None:
    with pytest.raises(ValueError, match="unknown overview kind"):
        OverviewPyramid(1024, 1024, block=512, kind="nearest", nodata=255)
    pyramid = OverviewPyramid(1024, 1024, block=512, kind="mode", nodata=255)
    with pytest.raises(ValueError, match="binary"):
        pyramid.add(np.full((2, 1024), 7, np.uint8))
    pyramid = OverviewPyramid(1024, 1024, block=512, kind="average", nodata=255)
    pyramid.add(np.zeros((1024, 1024), np.uint8))
    with pytest.raises(ValueError, match="more than the 1024 source rows"):
        pyramid.add(np.zeros((1, 1024), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        overview_sizes(0, 10, 512)
