"""Tiles in memory for a training run: the grouped split, band statistics and the batch stream.

The datasets here are small (tens to a few thousand 512-px tiles), so every tile is read once, kept
as float32 in [0, 1] (C x H x W) beside its 0/1 mask, and cropped/augmented per batch with a seeded
generator. Band statistics come from the training split only and travel into the model metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ls.errors import InputError
from edge_ls.training.config import DataConfig

Pair = tuple[np.ndarray, np.ndarray]  # image C x H x W float32 in [0, 1], mask H x W uint8 0/1


@dataclass
class TileSet:
    train: list[Pair]
    val: list[Pair]
    test: list[Pair]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop: int = 256
    batch_size: int = 8
    samples_per_epoch: int = 0
    val_size: int = 0
    val_crop: int = 0
    split_file: str = ""
    augment: Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair] | None = None
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.samples_per_epoch:
            self.samples_per_epoch = len(self.train)
        self._mean = np.asarray(self.mean, np.float32).reshape(-1, 1, 1)
        self._std = np.asarray(self.std, np.float32).reshape(-1, 1, 1)

    def normalize(self, image: np.ndarray) -> np.ndarray:
        return ((image - self._mean) / self._std).astype(np.float32, copy=False)

    def train_batches(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Random crops (augmented, normalized): N x C x crop x crop images, N x 1 x crop x crop masks.

        A last batch of one is dropped (batch norm needs two samples).
        """
        n = self.samples_per_epoch
        order = np.concatenate([rng.permutation(len(self.train)) for _ in range(-(-n // len(self.train)))])[
            :n
        ]
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if len(idx) < 2:
                break
            images, masks = [], []
            for i in idx:
                img, mask = random_crop(*self.train[i], self.crop, rng)
                if self.augment is not None:
                    img, mask = self.augment(img, mask, rng)
                images.append(self.normalize(np.ascontiguousarray(img, dtype=np.float32)))
                masks.append(np.ascontiguousarray(mask, dtype=np.float32)[None])
            yield np.stack(images), np.stack(masks)

    def eval_tiles(self, split: str, whole: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Tiles of a split, normalized (resized to ``val_size`` when set; centre-cropped to
        ``val_crop`` unless ``whole``)."""
        for img, mask in getattr(self, split):
            if self.val_size:
                img, mask = resize_pair(img, mask, self.val_size)
            if not whole and self.val_crop:
                h, w = mask.shape
                y, x = max(0, (h - self.val_crop) // 2), max(0, (w - self.val_crop) // 2)
                img = img[:, y : y + self.val_crop, x : x + self.val_crop]
                mask = mask[y : y + self.val_crop, x : x + self.val_crop]
            yield self.normalize(img), mask


def random_crop(image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator) -> Pair:
    """A ``size`` x ``size`` window at a random place; reflect-padded when the tile is smaller."""
    h, w = mask.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, 0), (0, ph), (0, pw)), mode="reflect")
        mask = np.pad(mask, ((0, ph), (0, pw)), mode="reflect")
        h, w = mask.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return image[:, y : y + size, x : x + size], mask[y : y + size, x : x + size]


def resize_pair(image: np.ndarray, mask: np.ndarray, size: int) -> Pair:
    import cv2

    img = cv2.resize(np.moveaxis(image, 0, -1), (size, size), interpolation=cv2.INTER_AREA)
    img = img[..., None] if img.ndim == 2 else img
    m = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(np.moveaxis(img, -1, 0), dtype=np.float32), m


def open_roots(roots: list[str], bands: list[str]):
    """One dataset over every root (layout detected per root), RGB or N bands in the model's order."""
    from edge_ls.training import datasets

    for root in roots:
        if not Path(root).exists():
            raise InputError(f"dataset folder not found: {root}")
    return datasets.open_datasets([str(r) for r in roots], tuple(bands))


def read_split_pairs(
    roots: list[str],
    bands: list[str],
    split: str = "all",
    split_file: str | Path | None = None,
    seed: int = 0,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(image C x H x W in [0, 1], mask, valid-or-None) of one split (``all`` = every usable pair).

    Without a split file the grouped 70/15/15 split of :mod:`edge_ls.training.splits` is made (not
    saved). Bad pairs are skipped and counted by the dataset.
    """
    from edge_ls.training import datasets, splits

    ds = open_roots(roots, bands)
    if split == "all":
        indices = range(len(ds))
    else:
        assignment = splits.splits_for(ds, split_file, seed)
        indices = datasets.indices_of(ds, assignment[split])
    for i in indices:
        sample = ds.try_get(i)
        if sample is not None:
            yield np.ascontiguousarray(np.moveaxis(sample.image, -1, 0)), sample.mask, sample.valid


def load_tiles(cfg: DataConfig) -> TileSet:
    """Read every pair of ``cfg.roots`` (bad pairs skipped and counted), split them with the grouped
    split file (created when missing) and compute band statistics on the training split only."""
    from edge_ls.training import datasets, splits

    ds = open_roots(cfg.roots, cfg.bands)
    assignment = splits.splits_for(ds, cfg.split_file or None, cfg.seed)
    parts: dict[str, list[Pair]] = {}
    for name in ("train", "val", "test"):
        parts[name] = []
        for i in datasets.indices_of(ds, assignment.get(name, [])):
            sample = ds.try_get(i)
            if sample is not None:
                parts[name].append((np.ascontiguousarray(np.moveaxis(sample.image, -1, 0)), sample.mask))
    if not parts["train"]:
        raise InputError(f"no usable training pairs under {', '.join(cfg.roots)}")
    mean, std = datasets.band_stats(ds, datasets.indices_of(ds, assignment["train"]))
    tiles = TileSet(
        parts["train"],
        parts["val"],
        parts["test"],
        mean,
        std,
        crop=cfg.crop,
        batch_size=cfg.batch_size,
        samples_per_epoch=cfg.samples_per_epoch,
        val_size=cfg.val_size,
        val_crop=cfg.val_crop,
        split_file=cfg.split_file,
        augment=_augmenter(cfg),
        skipped=dict(ds.skipped),
    )
    return tiles


def _augmenter(cfg: DataConfig) -> Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair] | None:
    """The seed's augmentation (:class:`edge_ls.training.augment.Augment`) on C x H x W crops."""
    if not cfg.augment:
        return None
    from edge_ls.training.augment import Augment

    return Augment(channels_first=True)
