"""Training on several ground sampling distances: the given-split loader, GSDs, scale and sensor
augmentation, per-dataset sampling (real l4s_rgb / cas_hokkaido files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ls.errors import ConfigError, InputError
from edge_ls.training import datasets, splits
from edge_ls.training.augment import Photometric, hue_turn
from edge_ls.training.config import config_from_dict
from edge_ls.training.tileset import TileSet, gsd_crop
from tests.training import fakes


def test_split_folders_keep_the_given_split(tmp_path: Path, real_data: Path) -> None:
    root = fakes.split_folders(tmp_path, real_data)
    ds = datasets.open_dataset(root)
    assert isinstance(ds, datasets.SplitFolders) and len(ds) == 6
    assignment = splits.make_splits(ds)
    assert {k: len(v) for k, v in assignment.items()} == {"train": 2, "val": 2, "test": 2}
    assert all("/validation/" in i for i in assignment["val"])
    sample = ds[0]
    # RGBA PNG: the alpha band is opacity, not a colour; three bands in [0, 1], a 0/1 mask
    assert sample.image.shape == (128, 128, 3) and sample.image.max() <= 1.0
    assert set(np.unique(sample.mask)) <= {0, 1}


def test_given_split_survives_combination_with_grouped_sets(tmp_path: Path, real_data: Path) -> None:
    l4s = fakes.split_folders(tmp_path, real_data)
    cas = fakes.folder_pairs(tmp_path, real_data, n=6)
    ds = datasets.open_datasets([cas, l4s])
    assignment = splits.make_splits(ds)
    for split, name in (("train", "train"), ("val", "validation"), ("test", "test")):
        l4s_ids = [i for i in assignment[split] if i.startswith("l4s_rgb/")]
        assert len(l4s_ids) == 2 and all(f"/{name}/" in i for i in l4s_ids)
    assert sum(len(v) for v in assignment.values()) == len(ds)


def test_a_folder_of_the_wrong_shape_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "train" / "images").mkdir(parents=True)  # no masks/
    with pytest.raises(InputError, match="not a dataset layout"):
        datasets.open_dataset(tmp_path)


def test_rgba_masks_grey_ones_read_colour_coded_ones_refused(tmp_path: Path, real_data: Path) -> None:
    """The upstream l4s encoding (RGBA, grey 0/255) is one mask; colour-coded RGBA is not."""
    import cv2

    root = fakes.split_folders(tmp_path, real_data, per_split=1)
    grey_path, coded_path = sorted((root / "train" / "masks").glob("*.png"))[0], None
    m = cv2.imread(str(grey_path), cv2.IMREAD_UNCHANGED)
    assert m.max() == 1  # a mask with landslide pixels
    cv2.imwrite(str(grey_path), np.dstack([m * 255] * 3 + [np.full_like(m, 255)]).astype(np.uint8))
    ds = datasets.open_dataset(root)
    assert len(list(ds)) == 3 and not ds.skipped
    assert np.array_equal(ds[ds.ids.index(f"l4s_rgb/train/{grey_path.stem}")].mask, m)
    coded_path = next((root / "test" / "masks").glob("*.png"))
    red_only = np.dstack([m * 255, np.zeros_like(m), np.zeros_like(m), np.full_like(m, 255)])
    cv2.imwrite(str(coded_path), red_only.astype(np.uint8))
    ds = datasets.open_dataset(root)
    assert len(list(ds)) == 2 and ds.skipped == {"mask_bands": 1}


def test_dataset_gsd_known_given_or_one_clear_error() -> None:
    assert datasets.dataset_gsd("l4s_rgb") == 10.0
    assert datasets.dataset_gsd("mine", 0.3) == 0.3
    with pytest.raises(ConfigError, match="ground sampling distance of dataset 'mine' is unknown"):
        datasets.dataset_gsd("mine")


def test_config_checks_the_mixed_gsd_keys() -> None:
    with pytest.raises(ConfigError, match=r"one value per data\.roots"):
        config_from_dict({"data": {"roots": ["a", "b"], "gsd_m": [1.0]}})
    with pytest.raises(ConfigError, match="scale_gsd"):
        config_from_dict({"data": {"roots": ["a"], "scale_gsd": [5.0, 1.0]}})
    with pytest.raises(ConfigError, match="list of numbers"):
        config_from_dict({"data": {"roots": ["a"], "weights": ["x"]}})
    cfg = config_from_dict({"data": {"roots": ["a", "b"], "weights": [1, 3], "scale_gsd": [0.5, 12]}})
    assert cfg.data.weights == [1.0, 3.0] and cfg.data.scale_gsd == [0.5, 12.0]


def test_gsd_crop_resamples_to_the_drawn_ground_distance() -> None:
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).random((3, 512, 512), dtype=np.float32)
    mask = np.zeros((512, 512), np.uint8)
    mask[:, :256] = 1
    # a 0.8 m tile shown at exactly 3.2 m: the whole 512-px tile shrinks into the 128-px crop
    out, m = gsd_crop(img, mask, 128, 0.8, (3.2, 3.2), rng)
    assert out.shape == (3, 128, 128) and m.shape == (128, 128)
    assert m[:, :60].all() and not m[:, 68:].any()  # the half-and-half mask survives the 4x shrink
    # a 10 m, 128-px tile cannot be shown coarser than 10 m (no window beyond the tile): native crop
    small = img[:, :128, :128]
    out, _ = gsd_crop(small, mask[:128, :128], 128, 10.0, (12.0, 12.0), rng)
    assert np.array_equal(out, small)
    # never enlarged beyond max_zoom: 10 m asked at 0.5 m is shown at 4 m (a 51-px window)
    out, m = gsd_crop(small, mask[:128, :128], 128, 10.0, (0.5, 0.5), rng)
    assert out.shape == (3, 128, 128)


def test_weighted_sampling_follows_the_source_weights() -> None:
    pair = (np.zeros((3, 64, 64), np.float32), np.zeros((64, 64), np.uint8))
    tiles = TileSet(
        [pair] * 10,
        [],
        [],
        (0.0,) * 3,
        (1.0,) * 3,
        crop=32,
        train_source=[0] * 9 + [1],
        source_names=["big", "small"],
        source_weight=[0.5, 0.5],
    )
    order = tiles._weighted_order(4000, np.random.default_rng(0))
    share_small = float(np.mean(order == 9))
    assert 0.45 < share_small < 0.55  # one tile of ten, drawn half the time


def test_photometric_changes_colour_but_not_shape_and_stays_in_range() -> None:
    rng = np.random.default_rng(0)
    img = np.random.default_rng(2).random((64, 64, 3), dtype=np.float32)
    aug = Photometric(p_gain=1, p_hue=1, p_blur=1, p_noise=1, p_permute=0)
    out = aug(img, rng)
    assert out.shape == img.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and not np.allclose(out, img)
    # a hue turn keeps the luminance and a full turn is the identity
    lum = np.asarray([0.299, 0.587, 0.114], np.float32)
    assert np.allclose(hue_turn(img, 25.0) @ lum, img @ lum, atol=1e-4)
    assert np.allclose(hue_turn(img, 360.0), img, atol=1e-4)
