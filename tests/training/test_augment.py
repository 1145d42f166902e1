"""Augmentation keeps image and mask aligned, masks 0/1, and is a pure function of the generator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ls.training.augment import DIHEDRAL, Augment, crop_or_pad, dihedral, resize, to_gray3
from edge_ls.training.datasets import Sample, open_dataset

GEOMETRY_ONLY = {"p_gray": 0.0, "p_light": 0.0}


@pytest.fixture(scope="module")
def sample(real_data: Path) -> Sample:
    return open_dataset(real_data / "cas_hokkaido")[5]


def marked(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """The real image with an asymmetric L-shaped marker burnt into the red band, and its mask."""
    img = sample.image.copy()
    mask = np.zeros(sample.mask.shape, np.uint8)
    mask[40:120, 60:80] = 1
    mask[100:120, 80:160] = 1
    img[..., 0] = np.where(mask == 1, 1.0, img[..., 0] * 0.4)  # red: marker 1.0, elsewhere <= 0.4
    return img, mask


def test_the_seven_non_identity_elements_are_distinct_and_move_image_and_mask_together(
    sample: Sample,
) -> None:
    img, mask = marked(sample)
    assert len(DIHEDRAL) == 8 and DIHEDRAL[0] == (0, False)
    seen = set()
    for e in range(8):
        i2, m2 = dihedral(img, e), dihedral(mask, e)
        np.testing.assert_array_equal(i2[..., 0] == 1.0, m2 == 1)
        seen.add(m2.tobytes())
    assert len(seen) == 8  # the L marker is asymmetric: every element gives another picture
    np.testing.assert_array_equal(dihedral(mask, 0), mask)
    np.testing.assert_array_equal(dihedral(mask, 1), np.rot90(mask))


def test_random_geometry_keeps_the_marker_under_the_mask(sample: Sample) -> None:
    img, mask = marked(sample)
    aug = Augment(size=384, p_scale=1.0, **GEOMETRY_ONLY)
    rng = np.random.default_rng(0)
    for _ in range(10):
        i2, m2 = aug(img, mask, rng)
        assert i2.shape == (384, 384, 3) and m2.shape == (384, 384) and m2.dtype == np.uint8
        assert set(np.unique(m2)) <= {0, 1}
        # Bilinear image vs nearest mask: they agree except on a one-pixel rim of the marker.
        agree = np.mean((i2[..., 0] > 0.7) == (m2 == 1))
        assert agree > 0.995
        if m2.any():
            assert i2[..., 0][m2 == 1].mean() > 0.9


def test_same_generator_state_same_output(sample: Sample) -> None:
    aug = Augment(size=256, p_scale=1.0, p_gray=0.5)
    a = aug(sample.image, sample.mask, np.random.default_rng(42))
    b = aug(sample.image, sample.mask, np.random.default_rng(42))
    c = aug(sample.image, sample.mask, np.random.default_rng(43))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_channels_first_gives_the_same_result(sample: Sample) -> None:
    aug = Augment(size=200, p_scale=1.0)
    hwc = aug(sample.image, sample.mask, np.random.default_rng(7))
    chw = aug(np.moveaxis(sample.image, -1, 0), sample.mask, np.random.default_rng(7))
    assert chw[0].shape == (3, 200, 200)
    np.testing.assert_array_equal(np.moveaxis(chw[0], 0, -1), hwc[0])
    np.testing.assert_array_equal(chw[1], hwc[1])
    with pytest.raises(ValueError, match="channels"):
        Augment()(np.zeros((4, 4, 4), np.float32), np.zeros((4, 4), np.uint8), np.random.default_rng(0))


def test_every_orientation_is_drawn(sample: Sample) -> None:
    _, mask = marked(sample)
    aug = Augment(p_scale=0.0, **GEOMETRY_ONLY)
    rng = np.random.default_rng(1)
    found = {aug(sample.image, mask, rng)[1].tobytes() for _ in range(200)}
    assert len(found) == 8


def test_grayscale_and_illumination_stay_in_unit_range(sample: Sample) -> None:
    g = to_gray3(sample.image)
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    aug = Augment(p_scale=0.0, p_dihedral=0.0, p_gray=1.0, p_light=1.0, brightness=0.5, contrast=(2, 3))
    img, mask = aug(sample.image, sample.mask, np.random.default_rng(2))
    assert img.dtype == np.float32 and img.min() >= 0.0 and img.max() <= 1.0
    assert np.array_equal(img[..., 0], img[..., 2])
    np.testing.assert_array_equal(mask, sample.mask)  # photometric steps leave the mask alone
    assert not np.allclose(img, to_gray3(sample.image))


def test_many_bands_and_small_tiles(sample: Sample) -> None:
    rng = np.random.default_rng(3)
    img14 = np.repeat(sample.image[:128, :128, :1], 14, axis=-1)  # a 14-band (Landslide4Sense-like) stack
    i2, m2 = Augment(size=160, p_scale=1.0)(img14, sample.mask[:128, :128], rng)
    assert i2.shape == (160, 160, 14) and m2.shape == (160, 160)
    i3, m3 = resize(img14, sample.mask[:128, :128], 64, 96)
    assert i3.shape == (64, 96, 14) and set(np.unique(m3)) <= {0, 1}
    i4, m4 = crop_or_pad(img14[:50, :40], sample.mask[:50, :40], 64, 64)
    assert i4.shape == (64, 64, 14) and m4.shape == (64, 64)
