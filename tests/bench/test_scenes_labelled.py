"""Labelled bench scenes (edge_ls.bench.scenes): real cells at a chosen landslide cover, with truth."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from edge_ls.bench.scenes import COVERS, cover_share, load_cell_pool, scene_paths, write_scene
from edge_ls.errors import InputError


@pytest.fixture(scope="module")
def pool(real_data: Path):
    return load_cell_pool(real_data)


def test_covers_are_ordered_and_scenes_reproducible(pool, tmp_path: Path) -> None:
    shares = {}
    for cover in COVERS:
        image, truth = scene_paths(tmp_path, 1024, cover)
        write_scene(image, truth, 1024, cover, pool)
        shares[cover] = cover_share(truth)
    assert shares["low"] < 0.03 < shares["medium"] < 0.2 < shares["high"]
    again = scene_paths(tmp_path / "again", 1024, "medium")
    write_scene(*again, 1024, "medium", pool)
    with rasterio.open(again[0]) as a, rasterio.open(scene_paths(tmp_path, 1024, "medium")[0]) as b:
        assert (a.read() == b.read()).all() and a.crs == b.crs and a.res == (1.0, 1.0)


def test_truth_matches_the_cells_it_was_cut_with(pool, tmp_path: Path) -> None:
    """Every truth pixel is a labelled pixel of a real cell: the scene's share is the pool's mix."""
    image, truth = scene_paths(tmp_path, 512, "high")
    write_scene(image, truth, 512, "high", pool)
    with rasterio.open(truth) as t:
        mask = t.read(1)
    assert set(np.unique(mask)) <= {0, 1} and mask.mean() > 0.2


def test_masks_that_do_not_match_their_images_fail_in_one_line(real_data: Path, tmp_path: Path) -> None:
    src = real_data / "bijie"
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    first = sorted((src / "images").iterdir())[0]
    shutil.copy(first, bad / "images" / first.name)
    mask = cv2.imread(str(src / "masks" / f"{first.stem}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(bad / "masks" / f"{first.stem}.png"), mask[::2, ::2])
    with pytest.raises(InputError, match="the masks do not match the images") as e:
        load_cell_pool(tmp_path, sources=("bad",))
    assert "\n" not in str(e.value)
