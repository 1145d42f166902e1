"""CellMeans and the quicklook renderer: streamed cell means equal a one-shot block average."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_ls.io.quicklook import CellMeans, quicklook_shape, render_png
from edge_ls.tiling import plan_tiles


def block_means(values: np.ndarray, valid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Reference: mean of the valid pixels of each cell, pixel -> cell by floor(i * cells / size)."""
    h, w = valid.shape
    ri = (np.arange(h) * rows) // h
    ci = (np.arange(w) * cols) // w
    out = np.full((rows, cols), np.nan)
    for r in range(rows):
        for c in range(cols):
            sel = valid[np.ix_(ri == r, ci == c)]
            if sel.any():
                out[r, c] = values[np.ix_(ri == r, ci == c)][sel].mean()
    return out


@pytest.mark.parametrize(("rows", "cols"), [(7, 11), (40, 53), (96, 128)])
def test_tile_cores_in_any_order_give_the_block_average(rows: int, cols: int) -> None:
    rng = np.random.default_rng(1)
    h, w = 96, 128
    values = rng.random((h, w)).astype(np.float32)
    valid = rng.random((h, w)) > 0.2
    valid[:, :9] = False  # a nodata collar: whole cells without a valid pixel
    plan = plan_tiles(w, h, 32, 0.25)
    cells = CellMeans(h, w, rows, cols)
    for tile in rng.permutation(list(plan)):
        ch, cw = plan.core(tile)
        window = np.s_[tile.y0 : tile.y0 + ch, tile.x0 : tile.x0 + cw]
        cells.add(tile.y0, tile.x0, values[window], valid[window])
    got = cells.means()[0]
    expected = block_means(values, valid, rows, cols)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got[~np.isnan(got)], expected[~np.isnan(expected)], rtol=1e-5)


def test_tile_cores_partition_the_raster() -> None:
    plan = plan_tiles(1000, 700, 256, 0.2)
    hits = np.zeros((700, 1000), np.int32)
    for tile in plan:
        ch, cw = plan.core(tile)
        hits[tile.y0 : tile.y0 + ch, tile.x0 : tile.x0 + cw] += 1
    assert (hits == 1).all()


def test_quicklook_shape_keeps_the_aspect_and_never_upsamples() -> None:
    assert quicklook_shape(718, 791, 1024) == (718, 791)
    assert quicklook_shape(10000, 20000, 1024) == (512, 1024)


def test_render_outlines_detections_and_greys_nodata() -> None:
    prob = np.full((20, 30), 0.1, np.float32)
    prob[:, :3] = np.nan
    share = np.zeros_like(prob)
    share[5:15, 10:20] = 0.3
    png = cv2.imdecode(np.frombuffer(render_png(prob, share, None), np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    assert png.shape == (20, 30, 3)
    assert tuple(png[0, 0]) == (64, 64, 64)
    assert tuple(png[5, 12]) == (0, 255, 255) and tuple(png[10, 15]) != (0, 255, 255)  # outline only
    with pytest.raises(ValueError, match="background"):
        render_png(prob, share, np.zeros((10, 10, 3), np.uint8))
