import numpy as np
import pytest

from edge_ls.errors import InputError
from edge_ls.tiling import pad_tile, plan_tiles


@pytest.mark.parametrize(("width", "height"), [(512, 512), (1000, 700), (2048, 1152), (791, 718)])
def test_plan_covers_every_pixel_with_regular_stride(width: int, height: int) -> None:
    plan = plan_tiles(width, height, tile_size=512, overlap=0.2)
    assert plan.stride == 410
    cover = np.zeros((height, width), dtype=np.int32)
    for tile in plan:
        assert tile.y0 == tile.row * plan.stride and tile.x0 == tile.col * plan.stride
        cover[tile.y0 : tile.y0 + tile.height, tile.x0 : tile.x0 + tile.width] += 1
    assert cover.min() >= 1
    # No tile starts past the raster, and the last ones reach its far edges.
    assert max(t.y0 + 512 for t in plan) >= height and max(t.x0 + 512 for t in plan) >= width
    assert all(t.y0 < height and t.x0 < width for t in plan)


def test_raster_smaller_than_a_tile_gets_one_padded_tile() -> None:
    plan = plan_tiles(13, 12, tile_size=512, overlap=0.2)
    assert plan.count == 1
    tile = plan.tile(0)
    assert (tile.y0, tile.x0, tile.height, tile.width) == (0, 0, 12, 13)
    assert plan.core(tile) == (12, 13)
    padded = pad_tile(np.ones((3, 12, 13), np.float32), 512)
    assert padded.shape == (3, 512, 512) and np.isfinite(padded).all()


def test_plan_refuses_an_empty_raster() -> None:
    with pytest.raises(InputError, match="nothing to tile"):
        plan_tiles(0, 12, tile_size=512, overlap=0.2)


def test_pad_tile_reflects_and_keeps_the_data() -> None:
    data = np.arange(2 * 5 * 6, dtype=np.float32).reshape(2, 5, 6)
    out = pad_tile(data, 8)
    assert out.shape == (2, 8, 8)
    np.testing.assert_array_equal(out[:, :5, :6], data)
    np.testing.assert_array_equal(out[:, 5, :6], data[:, 3])  # reflection, not zeros
