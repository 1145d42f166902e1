"""Labelled tiles: the one home for finding (image, mask) pairs on disk and reading them.

Two kinds of caller share it. Training (``edge_ls.training.datasets``) indexes pairs with
:func:`pair_records`, reads each image exactly as ``edge-ls detect`` reads it
(:func:`read_unit_image`, through :class:`edge_ls.io.source.RasterSource`) and each mask with
:func:`read_label`, and wraps them in its dataset classes. Export and evaluation read the tile sets
under ``shared/data/real`` (``<set>/images/*`` with ``<set>/masks/<stem>.png``, 0 background,
1 landslide, RGB 8-bit) as model-ready arrays (:func:`load_labelled`, :func:`load_tiles`): fed exactly
as the runtime feeds them (``to_unit_range`` then ``normalize`` from :mod:`edge_ls.pixel_math`), so a
quantization delta measured here is the delta the runtime will see.

A pair that cannot be used (unreadable or truncated file, image/mask size mismatch, mask values with
no binary meaning, image without a mask) raises :class:`BadPair`, an :class:`~edge_ls.errors.InputError`
that carries the QA counter key.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ConfigError, InputError
from edge_ls.pixel_math import normalize, to_unit_range

#: Raster file suffixes a labelled folder is indexed by.
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
RGB: tuple[str, ...] = ("red", "green", "blue")


# ------------------------------------------------------------------------------------------------------
# Finding pairs
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairRecord:
    """Where one pair lives; ``region`` is the sub-dataset/event it belongs to ('' when unknown)."""

    id: str
    image: Path
    mask: Path | None
    region: str = ""


def raster_files(folder: Path) -> list[Path]:
    """The raster files (:data:`RASTER_SUFFIXES`) directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


def pair_masks(images: list[Path], masks: list[Path]) -> list[Path | None]:
    """Mask of each image: the same stem, else the same trailing number (``img_012`` ~ ``mask_012``)."""
    by_stem = {m.stem: m for m in masks}
    by_number: dict[str, list[Path]] = {}
    for m in masks:
        num = _trailing_number(m.stem)
        if num is not None:
            by_number.setdefault(num, []).append(m)
    out: list[Path | None] = []
    for img in images:
        match = by_stem.get(img.stem)
        if match is None:
            num = _trailing_number(img.stem)
            candidates = by_number.get(num, []) if num is not None else []
            match = candidates[0] if len(candidates) == 1 else None
        out.append(match)
    return out


def _trailing_number(stem: str) -> str | None:
    m = re.search(r"(\d+)$", stem)
    return str(int(m.group(1))) if m else None


def find_dir(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``root/<name>`` that is a folder, or None."""
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def pair_records(
    name: str, image_dir: Path, mask_dir: Path, region: str = "", orphans: list[Path] | None = None
) -> list[PairRecord]:
    """Pairs of one image folder, ids ``<name>/[<region>/]<stem>``; masks no image claims are
    appended to ``orphans``."""
    images = raster_files(image_dir)
    all_masks = raster_files(mask_dir)
    masks = pair_masks(images, all_masks)
    if orphans is not None:
        used = set(masks)
        orphans += [m for m in all_masks if m not in used]
    prefix = f"{name}/{region}/" if region else f"{name}/"
    return [PairRecord(prefix + img.stem, img, m, region) for img, m in zip(images, masks, strict=True)]


def image_paths(dataset: str | Path) -> list[Path]:
    """Image files of a dataset folder (``<dir>/images/*`` or the folder itself), sorted by name."""
    root = Path(dataset)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    paths = raster_files(folder)
    if not paths:
        raise InputError(f"no images ({', '.join(RASTER_SUFFIXES)}) in {folder}")
    return paths


# ------------------------------------------------------------------------------------------------------
# Reading one pair
# ------------------------------------------------------------------------------------------------------


class BadPair(InputError):
    """A pair that cannot be used; ``reason`` is the QA counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def read_unit_image(path: Path, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """H x W x C float32 in [0, 1] as the runtime reads ``path`` for ``spec`` (+ validity or None)."""
    from rasterio.windows import Window

    from edge_ls.io.source import RasterSource

    check_complete(path)
    try:
        source = RasterSource(path, spec)
        with source, source.open_handle() as handle:
            x, valid = source.read(handle, Window(0, 0, source.width, source.height))
    except InputError as exc:
        raise BadPair("unreadable", str(exc)) from None
    except Exception as exc:  # GDAL/driver failures not mapped by the reader: still a bad file
        raise BadPair("unreadable", f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from None
    # mean 0 / std 1 in the spec: the reader's output is the unit-range image itself.
    image = np.ascontiguousarray(np.moveaxis(x, 0, -1), dtype=np.float32)
    return image, (None if valid.all() else valid)


def read_label(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H x W uint8 0/1, ignore-validity or None) from a mask raster's first band.

    Values {0, 1}: as they are. {0, 255}: a binary mask saved as an 8-bit image, 255 -> 1.
    {0, 1, 255}: 255 is the usual "ignore" label, excluded through the validity. Anything else
    (grey levels, class ids) has no binary meaning here: :class:`BadPair` ``mask_values``.
    """
    values = read_label_band(path)
    kind = mask_kind(values)
    if kind == "binary":
        return values.astype(np.uint8, copy=False), None
    if kind == "0_255":
        return (values == 255).astype(np.uint8), None
    if kind == "ignore_255":
        return (values == 1).astype(np.uint8), values != 255
    found = np.unique(values)
    shown = ", ".join(str(v) for v in found[:6]) + (", ..." if found.size > 6 else "")
    raise BadPair("mask_values", f"mask {path.name} has values {shown}; expected 0/1 (or 0/255)")


def mask_kind(values: np.ndarray) -> str:
    """``binary`` (0/1), ``0_255``, ``ignore_255`` (0/1 + 255) or ``other``."""
    found = set(np.unique(values).tolist())
    if found <= {0, 1}:
        return "binary"
    if found <= {0, 255}:
        return "0_255"
    if found <= {0, 1, 255}:
        return "ignore_255"
    return "other"


def check_complete(path: Path) -> None:
    """Refuse a truncated PNG/JPEG (the runtime reader's check, so a cut-off copy never trains on black)."""
    from edge_ls.io.source import truncation_problem

    problem = truncation_problem(path)
    if problem:
        raise BadPair("unreadable", problem)


def read_label_band(path: Path) -> np.ndarray:
    """The raw values of a mask raster's first band (its colour bands must agree)."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError

    check_complete(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                first = ds.read(1)
                # An RGB(A) mask is one mask only when its colour bands agree (a grey mask saved in
                # colour); otherwise the colours code something a 0/1 mask cannot hold.
                colour = [i for i, ci in enumerate(ds.colorinterp, 1) if ci.name != "alpha"][1:]
                for i in colour:
                    if not np.array_equal(ds.read(i), first):
                        raise BadPair(
                            "mask_bands",
                            f"mask {path.name} has {ds.count} bands whose values differ; "
                            "expected a single-band 0/1 mask",
                        )
                return first
    except (RasterioError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BadPair("unreadable", f"mask {path.name} cannot be read ({first})") from None


def guess_input_range(records: Sequence[PairRecord]) -> str:
    """``8bit`` when the first readable image is uint8, else ``reflectance``."""
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    for rec in records[:20]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(rec.image) as ds:
                    return "8bit" if ds.dtypes[0] == "uint8" else "reflectance"
        except Exception:  # a corrupt file is reported by QA, not here
            continue
    return "8bit"


# ------------------------------------------------------------------------------------------------------
# Model-ready tile arrays (export calibration, accuracy, evaluation)
# ------------------------------------------------------------------------------------------------------


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
    """H x W uint8 0/1, centre-cropped like its image; values mean what :func:`read_label` says (one
    reading of mask values for training and export). These arrays carry no validity, so an
    ``ignore`` (255) pixel counts as background."""
    import cv2

    mask, _ = read_label(path)
    return _fit(mask, size, cv2.INTER_NEAREST)


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
