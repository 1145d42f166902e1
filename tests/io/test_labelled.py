"""Pair finding and reading shared by training, export and evaluation, on real tiles."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_ls.artifact import ModelSpec
from edge_ls.errors import InputError
from edge_ls.io.labelled import (
    BadPair,
    image_paths,
    load_labelled,
    pair_records,
    read_label,
    read_mask,
    read_unit_image,
)
from tests.training import fakes

SPEC = ModelSpec(
    name="m",
    tier="edge-lite",
    bands=("red", "green", "blue"),
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    input_range="8bit",
    gsd_m=3.0,
    tile_size=256,
    overlap=0.0,
    activation="logits",
    threshold=0.5,
)


def test_pairs_by_stem_then_trailing_number_and_orphans(tmp_path: Path, real_data: Path) -> None:
    root = fakes.folder_pairs(tmp_path, real_data, n=3)
    first, second, third = sorted(p.stem for p in (root / "images").iterdir())
    (root / "masks" / f"{second}.png").rename(root / "masks" / f"mask_{second}.png")
    shutil.copy(root / "masks" / f"{third}.png", root / "masks" / "stray.png")
    (root / "images" / "notes.txt").write_text("not a raster")
    orphans: list[Path] = []
    records = pair_records("cas", root / "images", root / "masks", orphans=orphans)
    assert [r.id for r in records] == [f"cas/{first}", f"cas/{second}", f"cas/{third}"]
    assert records[1].mask == root / "masks" / f"mask_{second}.png"
    assert [p.name for p in orphans] == ["stray.png"]
    assert [p.stem for p in image_paths(root)] == [first, second, third]


def test_mask_values_mean_the_same_everywhere(tmp_path: Path, real_data: Path) -> None:
    """0/1 as is, 0/255 -> 0/1, 255 beside 0/1 = ignore, anything else refused with the file name."""
    src = sorted((real_data / "cas_hokkaido" / "masks").iterdir())[0]
    m = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    assert set(np.unique(m)) == {0, 1}
    cv2.imwrite(str(tmp_path / "a.png"), m * 255)
    ignore = m.copy()
    ignore[:10] = 255
    cv2.imwrite(str(tmp_path / "b.png"), ignore)
    cv2.imwrite(str(tmp_path / "c.png"), m * 3)
    assert np.array_equal(read_label(src)[0], m) and read_label(src)[1] is None
    assert np.array_equal(read_label(tmp_path / "a.png")[0], m)
    mask, valid = read_label(tmp_path / "b.png")
    assert valid is not None and not valid[:10].any() and valid[10:].all()
    assert np.array_equal(mask[10:], m[10:]) and not mask[:10].any()
    with pytest.raises(BadPair, match=r"c\.png has values 0, 3") as err:
        read_label(tmp_path / "c.png")
    assert err.value.reason == "mask_values"
    # The export's tile arrays read masks the same way (cropped like their image).
    assert np.array_equal(read_mask(tmp_path / "a.png", 256), read_mask(src, 256))
    with pytest.raises(InputError, match=r"c\.png"):
        read_mask(tmp_path / "c.png", 256)


def test_export_tiles_and_training_images_agree(real_data: Path) -> None:
    """The same 512-px tile read for export (cv2, /255) and for training (the runtime reader)."""
    root = real_data / "cas_hokkaido"
    tiles = load_labelled(root, SPEC, size=512, limit=2)
    for k, name in enumerate(tiles.names):
        image, valid = read_unit_image(root / "images" / f"{name}.png", SPEC)
        assert valid is None and image.shape == (512, 512, 3)
        np.testing.assert_allclose(np.moveaxis(image, -1, 0), tiles.images[k], rtol=0, atol=1e-6)
        assert np.array_equal(read_label(root / "masks" / f"{name}.png")[0], tiles.masks[k])


def test_truncated_image_is_a_bad_pair(tmp_path: Path, real_data: Path) -> None:
    src = sorted((real_data / "bijie" / "images").iterdir())[0]
    data = src.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BadPair) as err:
        read_unit_image(tmp_path / "cut.png", SPEC)
    assert err.value.reason == "unreadable"
