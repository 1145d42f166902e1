"""The blender stitches tiles without seams, in bounded memory, and carries nodata."""

import cv2
import numpy as np
import pytest

from edge_ls.blend import SCALE, RowBandBlender
from edge_ls.tiling import pad_tile, plan_tiles

#: The fixed-point canvas rounds each tile's share by at most half a unit; up to 4 tiles cover a pixel.
ATOL = 4 * 0.5 / SCALE + 1e-6


def _real_image(real_data, size=(700, 1000)) -> np.ndarray:
    """A real RGB scene (two CAS tiles side by side), as float32 [0, 1] H x W x 3."""
    paths = sorted((real_data / "cas_hokkaido" / "images").glob("*.png"))[:2]
    tiles = [cv2.imread(str(p))[:, :, ::-1] for p in paths]
    image = np.concatenate(tiles, axis=1).astype(np.float32) / 255.0
    return image[: size[0], : size[1]]


def _stitch(image: np.ndarray, model, tile: int, overlap: float, order=None, **blender_options) -> tuple:
    h, w = image.shape[:2]
    plan = plan_tiles(w, h, tile, overlap)
    blender = RowBandBlender(plan, **blender_options)
    prob = np.full((h, w), -1.0, dtype=np.float32)
    valid_out = np.zeros((h, w), dtype=bool)
    tiles = list(plan) if order is None else [list(plan)[i] for i in order]
    for t in tiles:
        chunk = image[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width].transpose(2, 0, 1)
        padded = pad_tile(chunk, tile)
        for band in blender.add(t, model(padded), np.ones((t.height, t.width), dtype=bool)):
            rows = slice(band.row_off, band.row_off + band.prob.shape[0])
            assert (prob[rows] == -1).all(), "a band was written twice"
            prob[rows], valid_out[rows] = band.prob, band.valid
    assert blender.complete
    return prob, valid_out, blender.peak_bands


def _pointwise(chw: np.ndarray) -> np.ndarray:
    """A per-pixel model (an index through a sigmoid): exactly translation-equivariant."""
    r, g, _ = chw
    return 1.0 / (1.0 + np.exp(-8.0 * (r - g)))


def _blur(chw: np.ndarray) -> np.ndarray:
    """A 9x9 box blur of the mean band: equivariant away from tile borders, like a small CNN."""
    return cv2.blur(chw.mean(axis=0), (9, 9), borderType=cv2.BORDER_REFLECT_101)


def test_pointwise_model_stitched_matches_whole_image(real_data) -> None:
    image = _real_image(real_data)
    whole = _pointwise(image.transpose(2, 0, 1))
    stitched, valid, _ = _stitch(image, _pointwise, tile=256, overlap=0.2)
    assert valid.all()
    np.testing.assert_allclose(stitched, whole, atol=ATOL)


def test_conv_model_stitched_has_no_seams(real_data) -> None:
    image = _real_image(real_data)
    whole = _blur(image.transpose(2, 0, 1))
    stitched, _, _ = _stitch(image, _blur, tile=256, overlap=0.25)
    err = np.abs(stitched - whole)
    # Border effects of each tile are weighted down by the Hann window: tiny everywhere, no seam lines.
    assert err.mean() < 2e-4
    assert err.max() < 0.02
    # Without blending (plain overwrite) the same model shows seams: the check above can fail.
    plan = plan_tiles(image.shape[1], image.shape[0], 256, 0.25)
    naive = np.zeros_like(whole)
    for t in plan:
        chunk = pad_tile(image[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width].transpose(2, 0, 1), 256)
        naive[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width] = _blur(chunk)[: t.height, : t.width]
    assert np.abs(naive - whole).max() > 0.02


def test_tiles_out_of_order_within_rows_give_the_same_result(real_data) -> None:
    image = _real_image(real_data)
    plan = plan_tiles(image.shape[1], image.shape[0], 256, 0.2)
    order = []
    for row in range(plan.rows):  # reverse each row, and swap neighbouring rows' last/first tiles
        order.extend(reversed(range(row * plan.cols, (row + 1) * plan.cols)))
    a, _, _ = _stitch(image, _blur, 256, 0.2)
    b, _, _ = _stitch(image, _blur, 256, 0.2, order=order)
    np.testing.assert_array_equal(a, b)  # integer sums: the order cannot change a bit


@pytest.mark.parametrize("band_rows", [7, 64])
def test_short_bands_stitch_the_same_as_stride_high_bands(real_data, band_rows: int) -> None:
    """Band height is a memory choice only: any height gives the same stitched image, every row once."""
    image = _real_image(real_data)
    whole, valid, _ = _stitch(image, _blur, 256, 0.2, band_rows=10_000)  # clipped to the stride
    short, short_valid, _ = _stitch(image, _blur, 256, 0.2, band_rows=band_rows)
    np.testing.assert_array_equal(short_valid, valid)
    np.testing.assert_allclose(short, whole, atol=1e-6)


def test_short_bands_hold_fewer_rows_in_raster_order() -> None:
    """Fed in raster order, 16-row bands keep fewer full-width rows alive than stride-high ones."""
    plan = plan_tiles(300, 3000, 128, 0.2)
    held = {}
    for band_rows in (plan.stride, 16):
        blender = RowBandBlender(plan, band_rows=band_rows)
        for t in plan:
            blender.add(t, np.full((128, 128), 0.5, dtype=np.float32), np.ones((t.height, t.width), bool))
        held[band_rows] = blender.peak_bands * blender.band_rows
    assert held[16] < held[plan.stride] and held[16] <= 128 + 16


def test_memory_is_a_few_bands_not_the_scene() -> None:
    plan = plan_tiles(600, 5000, 128, 0.2)
    blender = RowBandBlender(plan)
    for t in plan:
        blender.add(t, np.full((128, 128), 0.5, dtype=np.float32), np.ones((t.height, t.width), bool))
    assert blender.complete
    assert blender.peak_bands <= 3 < blender.n_bands


def test_nodata_and_skipped_tiles_stay_nodata() -> None:
    plan = plan_tiles(300, 300, 128, 0.2)
    blender = RowBandBlender(plan)
    out_valid = np.zeros((300, 300), dtype=bool)
    out_prob = np.zeros((300, 300), dtype=np.float32)
    for t in plan:
        if t.row == 0 and t.col == 0:
            bands = blender.skip(t)
        else:
            ys, xs = np.mgrid[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width]
            valid = ~((xs < 150) & (ys >= 200))  # a nodata block, the same for every tile covering it
            bands = blender.add(t, np.full((128, 128), 0.7, np.float32), valid)
        for band in bands:
            rows = slice(band.row_off, band.row_off + band.prob.shape[0])
            out_valid[rows], out_prob[rows] = band.valid, band.prob
    assert not out_valid[:100, :100].any()  # covered only by the skipped (all-nodata) tile
    assert not out_valid[200:, :150].any()
    np.testing.assert_allclose(out_prob[out_valid], 0.7, atol=ATOL)
    assert np.isnan(out_prob[~out_valid]).all()


@pytest.mark.parametrize("overlap", [0.0, 0.5])
def test_constant_prediction_is_reproduced_exactly(overlap: float) -> None:
    plan = plan_tiles(333, 257, 64, overlap)
    blender = RowBandBlender(plan)
    rows = 0
    for t in plan:
        for band in blender.add(t, np.full((64, 64), 0.25, np.float32), np.ones((t.height, t.width), bool)):
            np.testing.assert_allclose(band.prob, 0.25, atol=ATOL)
            rows += band.prob.shape[0]
    assert rows == 257
