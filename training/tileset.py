"""Tiles in memory for a training run: the grouped split, band statistics and the batch stream.

The datasets here are small (tens to a few thousand 512-px tiles), so every tile is read once, kept
as float32 in [0, 1] (C x H x W) beside its 0/1 mask, and cropped/augmented per batch with a seeded
generator. Band statistics come from the training split only and travel into the model metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
    #: Index into ``source_names`` of every pair of each split (one dataset = one source).
    train_source: list[int] = field(default_factory=list)
    val_source: list[int] = field(default_factory=list)
    test_source: list[int] = field(default_factory=list)
    source_names: list[str] = field(default_factory=list)
    #: Ground sampling distance (m) of each source; needed by ``scale_gsd``.
    source_gsd: list[float] = field(default_factory=list)
    #: Share of training crops drawn from each source; empty = uniform over tiles.
    source_weight: list[float] = field(default_factory=list)
    #: [lo, hi] metres: each crop is resampled to a GSD drawn log-uniformly in this range.
    scale_gsd: tuple[float, float] | None = None
    #: Probability that a crop is shown percentile-stretched per band, with the stretch of its whole
    #: tile (see :func:`scene_stretch`): what the runtime does to every non-8-bit scene.
    p_stretch: float = 0.0

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
        if self.source_weight:
            order = self._weighted_order(n, rng)
        else:
            reps = -(-n // len(self.train))
            order = np.concatenate([rng.permutation(len(self.train)) for _ in range(reps)])[:n]
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            if len(idx) < 2:
                break
            images, masks = [], []
            for i in idx:
                if self.scale_gsd is not None:
                    gsd = self.source_gsd[self.train_source[i]]
                    img, mask = gsd_crop(*self.train[i], self.crop, gsd, self.scale_gsd, rng)
                else:
                    img, mask = random_crop(*self.train[i], self.crop, rng)
                if self.p_stretch and rng.random() < self.p_stretch:
                    img = scene_stretch(img, self._stretch(i), rng)
                if self.augment is not None:
                    img, mask = self.augment(img, mask, rng)
                images.append(self.normalize(np.ascontiguousarray(img, dtype=np.float32)))
                masks.append(np.ascontiguousarray(mask, dtype=np.float32)[None])
            yield np.stack(images), np.stack(masks)

    def _stretch(self, i: int) -> np.ndarray:
        """Per-band 1st / 2nd / 3rd and 97th / 98th / 99th percentiles of training tile ``i`` (cached)."""
        cache = self.__dict__.setdefault("_stretch_cache", {})
        if i not in cache:
            img = self.train[i][0]
            cache[i] = np.percentile(img.reshape(img.shape[0], -1), [1, 2, 3, 97, 98, 99], axis=1).T
        return cache[i]

    def _weighted_order(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` training tile indices: a source drawn by ``source_weight``, then a tile of it."""
        sources = np.asarray(self.train_source)
        members = [np.flatnonzero(sources == k) for k in range(len(self.source_names))]
        weights = np.asarray(
            [w if len(m) else 0.0 for w, m in zip(self.source_weight, members, strict=True)], float
        )
        picks = rng.choice(len(members), size=n, p=weights / weights.sum())
        return np.asarray([members[k][rng.integers(len(members[k]))] for k in picks], dtype=np.int64)

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


def scene_stretch(image: np.ndarray, percentiles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``image`` (C x H x W in [0, 1]) stretched per band between a low and a high percentile of its
    tile (``percentiles``: C x 6, the 1/2/3 and 97/98/99th), clipped to [0, 1].

    Why: ``edge-ls detect`` stretches every non-8-bit scene (e.g. Sentinel-2 reflectance) 2-98 % per
    band, while 8-bit training tiles arrive as they were saved, often dark and flat (l4s_rgb's 98th
    percentile is 0.47). Without this the same ground looks twice as bright and contrasted at run time.
    """
    lo = percentiles[:, int(rng.integers(0, 3))]
    hi = percentiles[:, 3 + int(rng.integers(0, 3))]
    span = np.maximum(hi - lo, 1e-3)
    out = (image - lo[:, None, None]) / span[:, None, None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def gsd_crop(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    gsd_m: float,
    target_range: tuple[float, float],
    rng: np.random.Generator,
    max_zoom: float = 2.5,
) -> Pair:
    """A ``size``-px crop resampled to a ground distance drawn log-uniformly from ``target_range``.

    Why: the training sets are 0.8, 3 and 10 m and users fly 0.1 m UAVs; a landslide must look like
    a landslide at several pixel sizes. The draw is limited to what the tile holds (the window may
    not exceed it) and to at most ``max_zoom`` x enlargement (beyond that the pixels carry no new
    detail). The mask is area-averaged and re-thresholded at 0.5, so thin slides survive shrinking.
    """
    import cv2

    h, w = mask.shape
    lo = max(target_range[0], gsd_m / max_zoom)
    hi = min(target_range[1], gsd_m * min(h, w) / size)
    target = gsd_m if lo > hi else float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    win = max(1, round(size * target / gsd_m))
    if win == size:
        return random_crop(image, mask, size, rng)
    img, m = random_crop(image, mask, win, rng)
    interp = cv2.INTER_AREA if win > size else cv2.INTER_LINEAR
    hwc = np.ascontiguousarray(np.moveaxis(img, 0, -1), dtype=np.float32)
    out = cv2.resize(hwc, (size, size), interpolation=interp)
    out = out[..., None] if out.ndim == 2 else out
    mf = cv2.resize(m.astype(np.float32), (size, size), interpolation=interp)
    return np.ascontiguousarray(np.moveaxis(out, -1, 0)), (mf >= 0.5).astype(np.uint8)


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
    skipped: list[dict[str, str]] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
    """(image C x H x W in [0, 1], mask, valid-or-None) of one split (``all`` = every usable pair).

    Without a split file the grouped 70/15/15 split of :mod:`edge_ls.training.splits` is made (saved
    to ``split_file`` when it names a file that does not exist yet). Bad pairs are skipped and counted
    by the dataset; ``skipped`` (when given) also gets ``{"tile", "reason"}`` for each.
    """
    from edge_ls.io.labelled import BadPair
    from edge_ls.training import datasets, splits

    ds = open_roots(roots, bands)
    new_file = bool(split_file) and not Path(str(split_file)).is_file()
    if split == "all" and not new_file:
        indices: Iterable[int] = range(len(ds))
    else:
        assignment = splits.splits_for(ds, split_file, seed)
        indices = range(len(ds)) if split == "all" else datasets.indices_of(ds, assignment[split])
    for i in indices:
        sample = ds.try_get(i)
        if sample is None:
            if skipped is not None:
                try:  # fails again, cheaply: the reason, which try_get only logs
                    ds[i]
                    reason = "unreadable"
                except BadPair as exc:
                    reason = str(exc)
                skipped.append({"tile": ds.ids[i], "reason": reason})
            continue
        yield np.ascontiguousarray(np.moveaxis(sample.image, -1, 0)), sample.mask, sample.valid


def load_tiles(cfg: DataConfig) -> TileSet:
    """Read every pair of ``cfg.roots`` (bad pairs skipped and counted), split them with the grouped
    split file (created when missing) and compute band statistics on the training split only."""
    from edge_ls.training import datasets, splits

    ds = open_roots(cfg.roots, cfg.bands)
    members = list(getattr(ds, "members", [ds]))
    names = [m.name for m in members]
    assignment = splits.splits_for(ds, cfg.split_file or None, cfg.seed)
    parts: dict[str, list[Pair]] = {}
    sources: dict[str, list[int]] = {}
    for name in ("train", "val", "test"):
        parts[name], sources[name] = [], []
        for i in datasets.indices_of(ds, assignment.get(name, [])):
            sample = ds.try_get(i)
            if sample is not None:
                parts[name].append((np.ascontiguousarray(np.moveaxis(sample.image, -1, 0)), sample.mask))
                sources[name].append(names.index(sample.id.split("/", 1)[0]))
    if not parts["train"]:
        why = ", ".join(f"{k} {v}" for k, v in sorted(ds.skipped.items()))
        raise InputError(
            f"no usable training pairs under {', '.join(cfg.roots)}"
            + (f" (pairs skipped: {why}; the warnings above name each)" if why else "")
        )
    if cfg.mean:
        mean, std = tuple(cfg.mean), tuple(cfg.std)
    else:
        mean, std = datasets.band_stats(ds, datasets.indices_of(ds, assignment["train"]))
    gsd: list[float] = []
    if cfg.scale_gsd or cfg.gsd_m:
        given = cfg.gsd_m or [0.0] * len(names)
        gsd = [datasets.dataset_gsd(n, g) for n, g in zip(names, given, strict=True)]
    return build_tileset(cfg, parts, sources, names, mean, std, gsd, dict(ds.skipped))


def build_tileset(
    cfg: DataConfig,
    parts: dict[str, list[Pair]],
    sources: dict[str, list[int]],
    names: list[str],
    mean: tuple[float, ...],
    std: tuple[float, ...],
    gsd: list[float],
    skipped: dict[str, int] | None = None,
) -> TileSet:
    """The TileSet of pairs already read (by :func:`load_tiles`, or unpacked by the GPU script),
    with the crops, sampling and augmentation ``cfg`` asks for."""
    return TileSet(
        parts["train"],
        parts["val"],
        parts.get("test", []),
        mean,
        std,
        crop=cfg.crop,
        batch_size=cfg.batch_size,
        samples_per_epoch=cfg.samples_per_epoch,
        val_size=cfg.val_size,
        val_crop=cfg.val_crop,
        split_file=cfg.split_file,
        augment=_augmenter(cfg),
        skipped=dict(skipped or {}),
        train_source=sources["train"],
        val_source=sources["val"],
        test_source=sources.get("test", []),
        source_names=names,
        source_gsd=gsd,
        source_weight=list(cfg.weights),
        scale_gsd=(cfg.scale_gsd[0], cfg.scale_gsd[1]) if cfg.scale_gsd else None,
        p_stretch=cfg.p_stretch if cfg.augment else 0.0,
    )


def _augmenter(cfg: DataConfig) -> Callable[[np.ndarray, np.ndarray, np.random.Generator], Pair] | None:
    """The seed's augmentation (:class:`edge_ls.training.augment.Augment`) on C x H x W crops."""
    if not cfg.augment:
        return None
    from edge_ls.training.augment import Augment, Photometric

    # With scale_gsd the crop already carries the zoom; Augment's own zoom would undo its GSD.
    geometric = Augment(channels_first=True, p_scale=0.0 if cfg.scale_gsd else 0.5)
    if not cfg.photometric:
        return geometric
    photometric = Photometric()

    def both(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> Pair:
        img, m = geometric(image, mask, rng)
        hwc = photometric(np.moveaxis(img, 0, -1), rng)
        return np.ascontiguousarray(np.moveaxis(hwc, -1, 0)), m

    return both
