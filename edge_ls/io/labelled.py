"""Real labelled tiles for parity checks, calibration and accuracy deltas, preprocessed as a spec says.

The datasets under ``shared/data/real`` are ``<set>/images/*`` with ``<set>/masks/<stem>.png``
(0 background, 1 landslide), RGB 8-bit. Tiles are fed exactly as the runtime feeds them
(``to_unit_range`` then ``normalize`` from :mod:`edge_ls.pixel_math`), so a quantization delta
measured here is the delta the runtime will see.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ConfigError, InputError
from edge_ls.pixel_math import normalize, to_unit_range

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
RGB = ("red", "green", "blue")


@dataclass(frozen=True)
class LabelledTiles:
    """Tiles ready for a model (N x C x H x W float32) and their masks (N x H x W uint8, 0/1)."""

    images: np.ndarray
    masks: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: Sequence[int]) -> LabelledTiles:
        idx = list(index)
        return LabelledTiles(self.images[idx], self.masks[idx], tuple(self.names[i] for i in idx))


def image_paths(dataset: str | Path) -> list[Path]:
    """Image files of a dataset folder (``<dir>/images/*`` or the folder itself), sorted by name."""
    root = Path(dataset)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def preprocess(rgb: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """H x W x 3 uint8 RGB -> C x H x W float32 normalized as ``spec`` says (8-bit imagery only)."""
    if tuple(spec.bands) != RGB:
        raise ConfigError(
            f"model '{spec.name}' wants bands {list(spec.bands)}; the real tile sets are RGB 8-bit: "
            "calibrate and evaluate it on a dataset with its bands"
        )
    if rgb.dtype != np.uint8:
        raise InputError(f"expected 8-bit RGB tiles, got {rgb.dtype}")
    planar = np.transpose(rgb, (2, 0, 1))
    zeros = np.zeros(3, np.float32)
    unit = to_unit_range(planar, zeros, np.full(3, 1 / 255, np.float32))
    return normalize(unit, np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32))


def read_rgb(path: Path, size: int | None = None) -> np.ndarray:
    """Read an image as H x W x 3 uint8 RGB, centre-cropped to ``size`` (upsampled if smaller)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return _fit(rgb, size, cv2.INTER_AREA)


def read_mask(path: Path, size: int | None = None) -> np.ndarray:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise InputError(f"cannot read mask {path}")
    if mask.ndim == 3:
        mask = mask[..., 0]
    return (_fit(mask, size, cv2.INTER_NEAREST) > 0).astype(np.uint8)


def load_tiles(
    dataset: str | Path, spec: ModelSpec, size: int | None = None, limit: int | None = None, start: int = 0
) -> np.ndarray:
    """Unlabelled tiles (N x C x H x W) of a dataset, e.g. for calibration."""
    paths = image_paths(dataset)[start:]
    paths = paths[:limit] if limit else paths
    return np.stack([preprocess(read_rgb(p, size or spec.tile_size), spec) for p in paths])


def iter_batches(
    dataset: str | Path,
    spec: ModelSpec,
    batch: int = 2,
    size: int | None = None,
    limit: int | None = None,
    start: int = 0,
) -> Iterator[np.ndarray]:
    """Tiles in small batches: static calibration of a big model must not hold every tile at once."""
    paths = image_paths(dataset)[start:]
    paths = paths[:limit] if limit else paths
    for i in range(0, len(paths), batch):
        yield np.stack([preprocess(read_rgb(p, size or spec.tile_size), spec) for p in paths[i : i + batch]])


def load_labelled(
    dataset: str | Path, spec: ModelSpec, size: int | None = None, limit: int | None = None, start: int = 0
) -> LabelledTiles:
    """Tiles with their masks (``<dataset>/masks/<stem>.png``), for accuracy measurements."""
    root = Path(dataset)
    paths = image_paths(root)[start:]
    paths = paths[:limit] if limit else paths
    images, masks = [], []
    for p in paths:
        mask_path = root / "masks" / f"{p.stem}.png"
        if not mask_path.is_file():
            raise InputError(f"{p.name} has no mask at {mask_path}: accuracy needs a labelled dataset")
        images.append(preprocess(read_rgb(p, size or spec.tile_size), spec))
        masks.append(read_mask(mask_path, size or spec.tile_size))
    return LabelledTiles(np.stack(images), np.stack(masks), tuple(p.stem for p in paths))


def _fit(array: np.ndarray, size: int | None, interpolation: int) -> np.ndarray:
    """Centre-crop to ``size`` x ``size``; resize up first when the image is smaller."""
    import cv2

    if not size:
        return array
    h, w = array.shape[:2]
    if min(h, w) < size:
        scale = size / min(h, w)
        array = cv2.resize(
            array,
            (max(size, round(w * scale)), max(size, round(h * scale))),
            interpolation=cv2.INTER_LINEAR if interpolation != cv2.INTER_NEAREST else cv2.INTER_NEAREST,
        )
        h, w = array.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(array[top : top + size, left : left + size])
