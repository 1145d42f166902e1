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


def metrics_module():
    """``edge_ls.training.metrics`` (PixelMetrics, fit_temperature), or the interim stand-in."""
    try:
        from edge_ls.training import metrics
    except ImportError:
        from edge_ls.training import _interim as metrics
    return metrics


def read_pairs(roots: list[str], bands: list[str]) -> tuple[list[str], list[str], list[Pair]]:
    """(ids, groups, pairs) of every readable pair under ``roots``."""
    from edge_ls.training import _interim

    if bands != ["red", "green", "blue"]:
        raise InputError(f"bands {bands}: the interim reader reads RGB only")
    ids, groups, pairs = [], [], []
    for root in roots:
        if not Path(root).exists():
            raise InputError(f"dataset folder not found: {root}")
        for sid, group, img, mask in _interim.read_folder_pairs(root):
            ids.append(sid)
            groups.append(group)
            pairs.append((img, mask))
    if not pairs:
        raise InputError(f"no labelled pairs found under {', '.join(roots)}")
    return ids, groups, pairs


def split_ids(roots: list[str], ids: list[str], groups: list[str], split_file: str | Path | None) -> dict:
    """The split file's assignment (created, grouped 70/15/15, when it does not exist yet)."""
    from edge_ls.training import _interim

    if split_file and Path(split_file).is_file():
        return _interim.load_split(str(split_file))
    split = _interim.grouped_split(ids, groups)
    if split_file:
        _interim.save_split(split, str(split_file))
    return split


def read_split_pairs(
    roots: list[str], bands: list[str], split: str = "all", split_file: str | Path | None = None
) -> Iterator[Pair]:
    """The pairs of one split (``all`` = every pair), images in [0, 1] C x H x W."""
    ids, groups, pairs = read_pairs(roots, bands)
    if split == "all":
        yield from pairs
        return
    chosen = set(split_ids(roots, ids, groups, split_file)[split])
    for sid, pair in zip(ids, pairs, strict=True):
        if sid in chosen:
            yield pair


def load_tiles(cfg: DataConfig) -> TileSet:
    """Read every pair of ``cfg.roots``, split them (grouped; split file reused or created) and
    compute the training split's band statistics."""
    ids, groups, pairs = read_pairs(cfg.roots, cfg.bands)
    assignment = split_ids(cfg.roots, ids, groups, cfg.split_file)
    by_id = dict(zip(ids, pairs, strict=True))
    parts = {k: [by_id[i] for i in assignment.get(k, []) if i in by_id] for k in ("train", "val", "test")}
    stack = np.concatenate([img.reshape(img.shape[0], -1) for img, _ in parts["train"]], axis=1)
    mean = tuple(float(v) for v in stack.mean(axis=1))
    std = tuple(float(max(v, 1e-6)) for v in stack.std(axis=1))
    return TileSet(
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
    )


def _augmenter(cfg: DataConfig) -> Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair] | None:
    """Flips and the 8 dihedral orientations (interim: the full Augment comes from training.augment)."""
    if not cfg.augment:
        return None

    def flip_rotate(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        k = int(rng.integers(0, 4))
        img, mask = np.rot90(img, k, axes=(1, 2)), np.rot90(mask, k)
        if rng.random() < 0.5:
            img, mask = img[:, :, ::-1], mask[:, ::-1]
        gain = float(rng.uniform(0.8, 1.2))
        return np.clip(img * gain, 0, 1), mask

    return flip_rotate
