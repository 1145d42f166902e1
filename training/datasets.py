"""Labelled landslide datasets as (image, mask) samples, scaled exactly as the runtime scales them.

Every loader yields :class:`Sample`: the image H x W x C float32 in [0, 1] (bands already selected,
in the model's order), the mask H x W uint8 0/1, an id unique across datasets (``<dataset>/<stem>``)
and a group (tiles of one group must land in the same split, see :mod:`edge_ls.training.splits`).

Scaling to [0, 1] is the runtime's, not a training-side copy of it: GDAL-readable images (PNG, TIFF,
GeoTIFF) are read through :class:`edge_ls.io.source.RasterSource`, so a model sees in training the
values ``edge-ls detect`` will feed it for the same file (uint8 / 255 for ``8bit``; integer
reflectance / 10000 for ``reflectance``; percentile stretch of non-8-bit data for ``8bit``).
Landslide4Sense HDF5 has no runtime reader; its values are the raw bands divided by the per-band
mean vector the dataset authors published (iarai/Landslide4Sense-2022 issues #2, #4), so they are
multiplied back into raw units (Sentinel-2 DN = reflectance x 10000, slope in degrees, DEM in metres)
and then scaled by the same ``reflectance`` rule the runtime applies to a GeoTIFF holding those raw
values (/ 10000, clipped to [0, 1]).

Bad pairs (unreadable or corrupt files, image/mask size mismatch, masks whose values mean nothing
binary, images without a mask) raise :class:`~edge_ls.errors.InputError` from ``dataset[i]``;
iterating a dataset skips them, logs one line each and counts them in ``dataset.skipped``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_ls.artifact import INPUT_RANGES, ModelSpec
from edge_ls.errors import ConfigError, InputError

log = logging.getLogger(__name__)

RGB: tuple[str, ...] = ("red", "green", "blue")
#: Raster file suffixes the GDAL-backed loaders index.
RASTER_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: Ground sampling distance (m) of the datasets edge-ls trains on, by folder name (see
#: ``shared/data/real/README.md``); a dataset not listed here needs ``data.gsd_m`` in the config
#: when scale augmentation is on.
KNOWN_GSD_M: dict[str, float] = {"cas_hokkaido": 3.0, "bijie": 0.8, "l4s_rgb": 10.0}
#: Folder names of a dataset that ships its own split (``root/<split>/{images,masks}``).
GIVEN_SPLIT_DIRS: dict[str, str] = {"train": "train", "validation": "val", "val": "val", "test": "test"}

#: ``reflectance`` divisor of integer reflectance: the runtime's default (``ModelSpec.reflectance_scale``).
REFLECTANCE_SCALE = 10000.0

#: Landslide4Sense channels, in file order: Sentinel-2 B1..B12 (no B8A), slope, DEM.
#: B10 (cirrus) has no model band name in ``edge_ls.artifact.KNOWN_BANDS``.
L4S_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "watervapour",
    "cirrus",
    "swir1",
    "swir2",
    "slope",
    "dem",
)
#: The per-band divisor the Landslide4Sense authors applied to the raw bands (issue #2/#4 of
#: iarai/Landslide4Sense-2022). Not the mean/std "normalization constants" of their baseline code.
L4S_DIVISOR: tuple[float, ...] = (
    1111.81236406,
    824.63171476,
    663.41636217,
    445.17289745,
    645.8582926,
    1547.73508126,
    1960.44401001,
    1941.32229668,
    674.07572865,
    9.04787384,
    1113.98338755,
    519.90397929,
    20.29228266,
    772.83144788,
)
#: Sentinel-2 band codes accepted as band names (B8 is NIR; Landslide4Sense RGB = B4, B3, B2).
BAND_ALIASES = {
    **{f"b{i}": name for i, name in enumerate(L4S_BANDS[:12], start=1)},
    **{f"b{i:02d}": name for i, name in enumerate(L4S_BANDS[:12], start=1)},
    "elevation": "dem",
}


@dataclass
class Sample:
    """One labelled tile, ready for augmentation."""

    image: np.ndarray  # H x W x C float32 in [0, 1], channels in ``dataset.bands`` order
    mask: np.ndarray  # H x W uint8, 1 = landslide
    id: str
    group: str
    #: H x W bool, False on image nodata or ignored label pixels; None when every pixel counts.
    valid: np.ndarray | None = None


@dataclass(frozen=True)
class PairRecord:
    """Where one pair lives; ``region`` is the sub-dataset/event it belongs to ('' when unknown)."""

    id: str
    image: Path
    mask: Path | None
    region: str = ""


def canonical_band(name: str) -> str:
    """Band name as the artifact spells it (``B8`` -> ``nir``), lower-case."""
    key = name.strip().lower()
    return BAND_ALIASES.get(key, key)


class SegmentationDataset:
    """Indexed labelled pairs; subclasses say how one pair is read (:meth:`_load`)."""

    name: str
    bands: tuple[str, ...]
    input_range: str

    def __init__(self, name: str, bands: Sequence[str], input_range: str) -> None:
        if input_range not in INPUT_RANGES:
            raise ConfigError(f"input_range '{input_range}' must be one of {', '.join(INPUT_RANGES)}")
        self.name = name
        self.bands = tuple(canonical_band(b) for b in bands)
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ConfigError(f"bands {list(bands)}: give each band once")
        self.input_range = input_range
        self.skipped: Counter[str] = Counter()
        self._skipped_ids: set[str] = set()
        self._groups: list[str] | None = None
        #: Mask files no image claims (reported by QA; they cannot be used).
        self.orphan_masks: list[Path] = []

    # -- to implement -------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        raise NotImplementedError

    def _load(self, i: int) -> Sample:
        """Read pair ``i`` (group left empty); raise :class:`BadPair` when it cannot be used."""
        raise NotImplementedError

    def _region(self, i: int) -> str:
        return ""

    # -- shared ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        sample = self._load(i % len(self))
        sample.group = self.groups[i]
        return sample

    def __iter__(self) -> Iterator[Sample]:
        """Every usable sample; bad pairs are skipped, logged and counted in ``self.skipped``."""
        for i in range(len(self)):
            sample = self.try_get(i)
            if sample is not None:
                yield sample

    def try_get(self, i: int) -> Sample | None:
        """``self[i]``, or None (logged, counted in ``self.skipped``) when the pair is bad."""
        try:
            return self[i]
        except BadPair as exc:
            sid = self.ids[i]
            if sid not in self._skipped_ids:  # counted once, however often the pair is visited
                self._skipped_ids.add(sid)
                self.skipped[exc.reason] += 1
                log.warning("skipping %s: %s", sid, exc)
            return None

    @property
    def groups(self) -> list[str]:
        """Split groups, one per id: see :func:`derive_groups` (computed once, on first use)."""
        if self._groups is None:
            self._groups = derive_groups(self)
        return self._groups

    def set_groups(self, groups: Sequence[str]) -> None:
        if len(groups) != len(self):
            raise ValueError(f"{len(groups)} groups for {len(self)} samples")
        self._groups = list(groups)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} pairs, bands={self.bands})"


class BadPair(InputError):
    """A pair that cannot be used; ``reason`` is the QA counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# ------------------------------------------------------------------------------------------------------
# GDAL-readable pairs (PNG, TIFF, GeoTIFF)
# ------------------------------------------------------------------------------------------------------


class RasterPairs(SegmentationDataset):
    """Image/mask raster pairs read through the runtime's reader (same band choice, same scaling)."""

    def __init__(
        self,
        name: str,
        records: Sequence[PairRecord],
        bands: Sequence[str] = RGB,
        input_range: str | None = None,
        group_by: str = "auto",
    ) -> None:
        self.records = list(records)
        super().__init__(name, bands, input_range or _guess_input_range(self.records))
        if group_by not in ("auto", "region", "overlap"):
            raise ConfigError(f"group_by '{group_by}' must be auto, region or overlap")
        self.group_by = group_by
        self._spec = ModelSpec(
            name=f"dataset {name}",
            tier="dataset",
            bands=self.bands,
            mean=(0.0,) * len(self.bands),
            std=(1.0,) * len(self.bands),
            input_range=self.input_range,
            gsd_m=1.0,
            tile_size=512,
            overlap=0.0,
            activation="logits",
            threshold=0.5,
        )

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def _region(self, i: int) -> str:
        return self.records[i].region

    def _load(self, i: int) -> Sample:
        rec = self.records[i]
        if rec.mask is None:
            raise BadPair("missing_mask", f"{rec.image.name} has no mask")
        image, valid = read_unit_image(rec.image, self._spec)
        mask, label_valid = read_mask(rec.mask)
        if mask.shape != image.shape[:2]:
            raise BadPair(
                "size_mismatch",
                f"{rec.image.name} is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{rec.mask.name} is {mask.shape[1]}x{mask.shape[0]}",
            )
        if label_valid is not None:
            valid = label_valid if valid is None else valid & label_valid
        return Sample(image, mask, rec.id, "", valid)


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


def read_mask(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(H x W uint8 0/1, ignore-validity or None) from a mask raster's first band.

    Values {0, 1}: as they are. {0, 255}: a binary mask saved as an 8-bit image, 255 -> 1.
    {0, 1, 255}: 255 is the usual "ignore" label, excluded through the validity. Anything else
    (grey levels, class ids) has no binary meaning here: :class:`BadPair` ``mask_values``.
    """
    values = _read_first_band(path)
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


def _read_first_band(path: Path) -> np.ndarray:
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


def _guess_input_range(records: Sequence[PairRecord]) -> str:
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


def _rasters(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)


def _pair_masks(images: list[Path], masks: list[Path]) -> list[Path | None]:
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


def _find_dir(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _records(
    name: str, image_dir: Path, mask_dir: Path, region: str = "", orphans: list[Path] | None = None
) -> list[PairRecord]:
    """Pairs of one image folder; masks no image claims are appended to ``orphans``."""
    images = _rasters(image_dir)
    all_masks = _rasters(mask_dir)
    masks = _pair_masks(images, all_masks)
    if orphans is not None:
        used = set(masks)
        orphans += [m for m in all_masks if m not in used]
    prefix = f"{name}/{region}/" if region else f"{name}/"
    return [PairRecord(prefix + img.stem, img, m, region) for img, m in zip(images, masks, strict=True)]


class FolderPairs(RasterPairs):
    """``root/images/*`` + ``root/masks/<stem>.png`` (the layout of ``shared/data/real``).

    No region information: groups are overlap clusters (see :func:`derive_groups`).
    """

    def __init__(self, root: str | Path, bands: Sequence[str] = RGB, input_range: str | None = None) -> None:
        root = Path(root)
        if not (root / "images").is_dir() or not (root / "masks").is_dir():
            raise InputError(f"{root} has no images/ and masks/ folders")
        orphans: list[Path] = []
        records = _records(root.name, root / "images", root / "masks", orphans=orphans)
        super().__init__(root.name, records, bands, input_range)
        self.root = root
        self.orphan_masks = orphans


class SplitFolders(RasterPairs):
    """``root/{train,validation,test}/images/*`` + ``masks/<stem>.png``: a dataset with its own split.

    The given split is kept (:attr:`given_splits`); ids are ``<dataset>/<split>/<stem>`` and each
    split folder is one group, so no grouped re-split can mix them.
    """

    def __init__(self, root: str | Path, bands: Sequence[str] = RGB, input_range: str | None = None) -> None:
        root = Path(root)
        parts = split_dirs(root)
        if not parts:
            raise InputError(
                f"{root} has no train/, validation/ or test/ folders each holding images/ and masks/"
            )
        records: list[PairRecord] = []
        orphans: list[Path] = []
        for folder, _ in parts:
            records += _records(root.name, folder / "images", folder / "masks", folder.name, orphans)
        super().__init__(root.name, records, bands, input_range, group_by="region")
        self.root = root
        self.orphan_masks = orphans
        split_of = {folder.name: split for folder, split in parts}
        #: The dataset's own split name (train/val/test) of every id.
        self.given_splits = {r.id: split_of[r.region] for r in self.records}


def split_dirs(root: Path) -> list[tuple[Path, str]]:
    """The ``(folder, split)`` pairs of a dataset laid out by split; empty when it is not."""
    out = []
    for name, split in GIVEN_SPLIT_DIRS.items():
        folder = root / name
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            out.append((folder, split))
    return out


class CASLandslide(RasterPairs):
    """CAS Landslide: ``root/<sub-dataset>/{img,mask}/`` TIFF (or ``root/{img,mask}/`` for one).

    ``mask/`` holds 0/1 labels; ``label/`` (inverted colours, landslide black) is ignored. Groups:
    the sub-dataset (region) when there are at least three, else overlap clusters within each
    sub-dataset (``group_by`` forces either).
    """

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str] = RGB,
        input_range: str | None = None,
        group_by: str = "auto",
    ) -> None:
        root = Path(root)
        subs = [root] if _is_cas_folder(root) else sorted(p for p in root.iterdir() if _is_cas_folder(p))
        if not subs:
            raise InputError(f"{root} has no CAS sub-dataset folders (img/ and mask/)")
        records: list[PairRecord] = []
        orphans: list[Path] = []
        for sub in subs:
            records += _records(root.name, sub / "img", sub / "mask", region=sub.name, orphans=orphans)
        super().__init__(root.name, records, bands, input_range, group_by)
        self.root = root
        self.orphan_masks = orphans


def _is_cas_folder(p: Path) -> bool:
    return p.is_dir() and (p / "img").is_dir() and (p / "mask").is_dir()


GDCLD_IMAGE_DIRS = ("images", "image", "img")
GDCLD_MASK_DIRS = ("masks", "mask", "labels", "label")


class GDCLDPairs(RasterPairs):
    """GDCLD-style GeoTIFF pairs: ``root/[<event>/]{image(s)|img}/`` + ``{mask(s)|label(s)}/``.

    Each event folder (one earthquake) is a region. Images keep their georeference; masks are read
    as rasters of the same size (no reprojection: a mask on another grid is a size mismatch).
    """

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str] = RGB,
        input_range: str | None = None,
        group_by: str = "auto",
    ) -> None:
        root = Path(root)
        events = [root] if _gdcld_dirs(root) else sorted(p for p in root.iterdir() if _gdcld_dirs(p))
        if not events:
            raise InputError(f"{root} has no image/ + mask/ folders (nor event folders holding them)")
        records: list[PairRecord] = []
        orphans: list[Path] = []
        for ev in events:
            image_dir, mask_dir = _gdcld_dirs(ev)  # type: ignore[misc]
            region = "" if ev == root else ev.name
            records += _records(root.name, image_dir, mask_dir, region=region, orphans=orphans)
        super().__init__(root.name, records, bands, input_range, group_by)
        self.root = root
        self.orphan_masks = orphans


def _gdcld_dirs(p: Path) -> tuple[Path, Path] | None:
    if not p.is_dir():
        return None
    image_dir, mask_dir = _find_dir(p, GDCLD_IMAGE_DIRS), _find_dir(p, GDCLD_MASK_DIRS)
    return (image_dir, mask_dir) if image_dir and mask_dir else None


# ------------------------------------------------------------------------------------------------------
# Landslide4Sense HDF5
# ------------------------------------------------------------------------------------------------------


class Landslide4Sense(SegmentationDataset):
    """Landslide4Sense: ``root/img/image_N.h5`` (``img`` 128x128x14) + ``root/mask/mask_N.h5``.

    ``root`` may also be the folder holding ``TrainData/``. Band names are :data:`L4S_BANDS` (``B1``..
    ``B12`` accepted); RGB is B4, B3, B2. Scaling: see the module docstring.
    """

    def __init__(
        self, root: str | Path, bands: Sequence[str] = RGB, input_range: str = "reflectance"
    ) -> None:
        root = Path(root)
        if not (root / "img").is_dir() and (root / "TrainData" / "img").is_dir():
            root = root / "TrainData"
        if not (root / "img").is_dir():
            raise InputError(f"{root} has no img/ folder of Landslide4Sense .h5 patches")
        super().__init__(root.name if root.name != "TrainData" else root.parent.name, bands, input_range)
        unknown = [b for b in self.bands if b not in L4S_BANDS]
        if unknown:
            raise ConfigError(f"Landslide4Sense has no band {unknown[0]} (bands: {', '.join(L4S_BANDS)})")
        self.root = root
        self.indexes = tuple(L4S_BANDS.index(b) for b in self.bands)
        images = sorted((root / "img").glob("*.h5"), key=lambda p: (len(p.stem), p.stem))
        masks = sorted((root / "mask").glob("*.h5")) if (root / "mask").is_dir() else []
        paired = _pair_masks(images, masks)
        self.orphan_masks = sorted(set(masks) - set(paired))  # type: ignore[arg-type]
        self.records = [
            PairRecord(f"{self.name}/{img.stem}", img, m) for img, m in zip(images, paired, strict=True)
        ]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def _load(self, i: int) -> Sample:
        rec = self.records[i]
        if rec.mask is None:
            raise BadPair("missing_mask", f"{rec.image.name} has no mask")
        raw = _read_h5(rec.image, "img")
        if raw.ndim != 3 or raw.shape[-1] != len(L4S_BANDS):
            raise BadPair("unreadable", f"{rec.image.name}: 'img' has shape {raw.shape}, expected H x W x 14")
        values = _read_h5(rec.mask, "mask")
        if values.shape != raw.shape[:2]:
            raise BadPair(
                "size_mismatch", f"{rec.image.name} is {raw.shape[:2]} but {rec.mask.name} is {values.shape}"
            )
        kind = mask_kind(values)
        if kind == "other":
            raise BadPair("mask_values", f"mask {rec.mask.name} has values other than 0/1 (or 0/255)")
        mask = (values == (255 if kind == "0_255" else 1)).astype(np.uint8)
        image, valid = l4s_unit(raw, self.indexes, self.input_range)
        if kind == "ignore_255":
            valid = (values != 255) if valid is None else valid & (values != 255)
        return Sample(image, mask, rec.id, "", valid)


def l4s_unit(
    raw: np.ndarray, indexes: Sequence[int], input_range: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landslide4Sense values -> [0, 1] for the chosen channels (H x W x C float32, validity or None).

    ``reflectance``: back to raw units (x the authors' divisor), then / 10000 as the runtime does for
    integer reflectance. ``8bit``: the runtime's rule for non-8-bit data, a 2-98 percentile stretch.
    """
    from edge_ls.io.source import STRETCH_PERCENTILES

    x = raw[..., list(indexes)].astype(np.float64)
    finite = np.isfinite(x).all(axis=-1)
    out = np.zeros(x.shape, np.float32)
    for c, band in enumerate(indexes):
        v = x[..., c]
        if input_range == "reflectance":
            u = v * L4S_DIVISOR[band] / REFLECTANCE_SCALE
        else:
            good = v[finite]
            lo, hi = np.percentile(good, STRETCH_PERCENTILES) if good.size else (0.0, 1.0)
            u = (v - lo) / (hi - lo) if hi > lo else v - lo
        out[..., c] = np.clip(np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    return out, (None if finite.all() else finite)


def _read_h5(path: Path, key: str) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        from edge_ls.errors import MissingExtraError

        raise MissingExtraError("h5py", "train", "reading Landslide4Sense HDF5") from None
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise BadPair("unreadable", f"{path.name} has no '{key}' dataset (keys: {', '.join(f)})")
            return np.asarray(f[key][()])
    except BadPair:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise BadPair("unreadable", f"{path.name} cannot be read as HDF5 ({exc})") from None


# ------------------------------------------------------------------------------------------------------
# Several datasets as one
# ------------------------------------------------------------------------------------------------------


class ConcatDataset(SegmentationDataset):
    """Datasets one after the other; ids and groups keep each member's ``<dataset>/`` prefix."""

    def __init__(self, members: Sequence[SegmentationDataset]) -> None:
        if not members:
            raise ConfigError("no datasets to combine")
        bands = {m.bands for m in members}
        ranges = {m.input_range for m in members}
        if len(bands) != 1 or len(ranges) != 1:
            raise ConfigError(
                "datasets to combine must share bands and input_range: "
                + "; ".join(f"{m.name}: {m.bands}, {m.input_range}" for m in members)
            )
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"datasets to combine have the same name ({', '.join(names)}): rename a folder")
        super().__init__("+".join(names), members[0].bands, members[0].input_range)
        self.members = list(members)
        self._offsets = np.cumsum([0] + [len(m) for m in members])

    @property
    def ids(self) -> list[str]:
        return [i for m in self.members for i in m.ids]

    def _locate(self, i: int) -> tuple[SegmentationDataset, int]:
        k = int(np.searchsorted(self._offsets, i, side="right") - 1)
        return self.members[k], i - int(self._offsets[k])

    def _load(self, i: int) -> Sample:
        member, j = self._locate(i)
        return member._load(j)

    def _region(self, i: int) -> str:
        member, j = self._locate(i)
        return member._region(j)

    @property
    def groups(self) -> list[str]:
        if self._groups is None:
            self._groups = [g for m in self.members for g in m.groups]
        return self._groups

    @property
    def skipped(self) -> Counter[str]:  # type: ignore[override]
        total: Counter[str] = Counter()
        for m in self.members:
            total.update(m.skipped)
        return total

    @skipped.setter
    def skipped(self, value: Counter[str]) -> None:  # the base __init__ assigns it
        pass

    def try_get(self, i: int) -> Sample | None:
        member, j = self._locate(i)
        return member.try_get(j)

    @property
    def given_splits(self) -> dict[str, str]:
        """The members' own splits (ids of members without one are absent)."""
        out: dict[str, str] = {}
        for m in self.members:
            out.update(getattr(m, "given_splits", {}))
        return out


# ------------------------------------------------------------------------------------------------------
# Layout detection
# ------------------------------------------------------------------------------------------------------


def open_dataset(
    path: str | Path, bands: Sequence[str] = RGB, input_range: str | None = None
) -> SegmentationDataset:
    """The loader matching the folder layout at ``path`` (see the module docstring for the layouts)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    if (root / "images").is_dir() and (root / "masks").is_dir() and _png_masks(root / "masks"):
        return FolderPairs(root, bands, input_range)
    if split_dirs(root):
        return SplitFolders(root, bands, input_range)
    if any(root.glob("img/*.h5")) or any(root.glob("TrainData/img/*.h5")):
        return Landslide4Sense(root, bands, input_range or "reflectance")
    if _is_cas_folder(root) or any(_is_cas_folder(p) for p in root.iterdir()):
        return CASLandslide(root, bands, input_range)
    if _gdcld_dirs(root) or any(_gdcld_dirs(p) for p in root.iterdir()):
        return GDCLDPairs(root, bands, input_range)
    raise InputError(
        f"{root} is not a dataset layout edge-ls knows: images/ + masks/<stem>.png, "
        "{train,validation,test}/images/ + masks/, CAS img/ + mask/ "
        "(per sub-dataset), Landslide4Sense img/*.h5 + mask/*.h5, or GeoTIFF image/ + mask/ pairs"
    )


def open_datasets(
    paths: Sequence[str | Path], bands: Sequence[str] = RGB, input_range: str | None = None
) -> SegmentationDataset:
    """One dataset for one path; a :class:`ConcatDataset` for several."""
    members = [open_dataset(p, bands, input_range) for p in paths]
    if len(members) > 1 and input_range is None and len({m.input_range for m in members}) > 1:
        members = [
            open_dataset(p, bands, "8bit" if all(m.input_range == "8bit" for m in members) else "reflectance")
            for p in paths
        ]
    return members[0] if len(members) == 1 else ConcatDataset(members)


def _png_masks(folder: Path) -> bool:
    masks = _rasters(folder)
    return bool(masks) and sum(m.suffix.lower() == ".png" for m in masks) * 2 >= len(masks)


# ------------------------------------------------------------------------------------------------------
# Groups, statistics, label QA
# ------------------------------------------------------------------------------------------------------


@dataclass
class TileFingerprint:
    """Hashes to find duplicates (whole image) and stride-half overlaps (aligned half-tile blocks)."""

    whole: str
    blocks: tuple[str, ...] = field(default_factory=tuple)


def fingerprint(image: np.ndarray) -> TileFingerprint:
    """Whole-image hash plus hashes of the 2 x 2 grid of half-size blocks (non-constant ones only).

    CAS tiles are 512-px windows at stride 256: horizontal/vertical neighbours share two blocks,
    diagonal ones one. Constant blocks (nodata collars, black borders) are left out so they do not
    link unrelated tiles.
    """
    h, w = image.shape[:2]
    whole = _digest(image)
    bh, bw = h // 2, w // 2
    blocks = []
    if bh >= 8 and bw >= 8:
        for y in (0, h - bh) if h == 2 * bh else (0, bh):
            for x in (0, w - bw) if w == 2 * bw else (0, bw):
                block = image[y : y + bh, x : x + bw]
                if float(block.max()) > float(block.min()):
                    blocks.append(_digest(block))
    return TileFingerprint(whole, tuple(blocks))


def _digest(a: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def overlap_clusters(prints: Sequence[TileFingerprint | None]) -> list[int]:
    """Connected components of "identical or sharing a half-tile block"; one label per tile."""
    parent = list(range(len(prints)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[str, int] = {}
    for i, fp in enumerate(prints):
        if fp is None:
            continue
        for key in (fp.whole, *fp.blocks):
            j = first.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(prints))]


def derive_groups(dataset: SegmentationDataset) -> list[str]:
    """Split group of every pair: ``<dataset>/<region>`` or ``<dataset>/[<region>/]<first id of its
    overlap cluster>``.

    ``group_by='region'`` (or ``auto`` with at least three regions) groups by region (sub-dataset,
    event). Otherwise tiles are grouped by overlap clusters: tiles sharing an identical half-tile
    block (CAS stride-256 neighbours) or identical whole images are linked, and each connected set
    is one group, so no overlapping crop can straddle two splits. Overlaps not aligned to half a tile
    (or between tiles scaled differently) are not detected; a pair that cannot be read is its own group.
    """
    n = len(dataset)
    regions = [dataset._region(i) for i in range(n)]
    group_by = getattr(dataset, "group_by", "auto")
    if group_by == "region" or (group_by == "auto" and len({r for r in regions if r}) >= 3):
        if not all(regions):
            raise ConfigError(f"{dataset.name}: grouping by region needs every pair in a region folder")
        return [f"{dataset.name}/{r}" for r in regions]
    prints: list[TileFingerprint | None] = []
    for i in range(n):
        try:
            prints.append(fingerprint(dataset._load(i).image))
        except BadPair:
            prints.append(None)
    labels = overlap_clusters(prints)
    ids = dataset.ids
    out = []
    for i in range(n):
        region = f"{regions[i]}/" if regions[i] else ""
        leader = ids[labels[i]].rsplit("/", 1)[-1]
        out.append(f"{dataset.name}/{region}{leader}")
    return out


def band_stats(
    dataset: SegmentationDataset, indices: Sequence[int] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std over every valid pixel of ``indices`` (the training split), streamed.

    Chan's pairwise update in float64, one sample at a time: nothing is stacked. Bad pairs are
    skipped (counted in ``dataset.skipped``). std has a floor of 1e-6 (a constant band).
    """
    count = 0
    mean = np.zeros(len(dataset.bands), np.float64)
    m2 = np.zeros(len(dataset.bands), np.float64)
    for i in range(len(dataset)) if indices is None else indices:
        sample = dataset.try_get(int(i))
        if sample is None:
            continue
        px = sample.image.reshape(-1, sample.image.shape[-1]).astype(np.float64)
        if sample.valid is not None:
            px = px[sample.valid.ravel()]
        n_b = px.shape[0]
        if n_b == 0:
            continue
        mean_b = px.mean(axis=0)
        m2_b = ((px - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if count == 0:
        raise InputError(f"{dataset.name}: no readable pixels to compute band statistics from")
    std = np.maximum(np.sqrt(m2 / count), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


def indices_of(dataset: SegmentationDataset, ids: Sequence[str]) -> list[int]:
    """Positions of ``ids`` in ``dataset``; unknown ids fail naming the first one."""
    where = {sid: i for i, sid in enumerate(dataset.ids)}
    missing = [s for s in ids if s not in where]
    if missing:
        raise ConfigError(f"{len(missing)} id(s) not in dataset {dataset.name}, e.g. '{missing[0]}'")
    return [where[s] for s in ids]


QA_SKIP_REASONS = ("unreadable", "size_mismatch", "mask_values", "missing_mask")


def qa_report(dataset: SegmentationDataset, max_examples: int = 10) -> dict:
    """Label QA over every pair: counts (and a few example ids) of each problem.

    ``skipped``: pairs that cannot be used (unreadable/corrupt, size mismatch, non-binary mask,
    missing mask); they are skipped by training, not fatal. ``mask_0_255``: masks stored as 0/255,
    read as 0/1. ``mask_ignore_255``: 0/1 masks with 255 = ignore. ``empty_masks``: no landslide pixel
    (kept: true negatives). ``duplicates``: tiles whose image is identical to an earlier tile's.
    ``overlapping_tiles``: tiles sharing a half-tile block with another (not identical) tile;
    ``overlap_clusters``: connected sets of more than one such tile.
    """
    problems: dict[str, list[str]] = {
        k: []
        for k in (
            *QA_SKIP_REASONS,
            "mask_0_255",
            "mask_ignore_255",
            "empty_masks",
            "duplicates",
            "overlapping_tiles",
        )
    }
    prints: list[TileFingerprint | None] = []
    ids = dataset.ids
    positive = pixels = 0
    for i in range(len(dataset)):
        try:
            sample = dataset._load(i)
        except BadPair as exc:
            problems[exc.reason].append(ids[i])
            prints.append(None)
            continue
        prints.append(fingerprint(sample.image))
        kind = _mask_file_kind(dataset, i)
        if kind in ("0_255", "ignore_255"):
            problems[f"mask_{kind}"].append(ids[i])
        m = sample.mask if sample.valid is None else sample.mask[sample.valid]
        positive += int(m.sum())
        pixels += int(m.size)
        if not m.any():
            problems["empty_masks"].append(ids[i])
    seen: dict[str, int] = {}
    duplicate_sets: dict[int, list[str]] = {}
    for i, fp in enumerate(prints):
        if fp is None:
            continue
        j = seen.setdefault(fp.whole, i)
        if j != i:
            problems["duplicates"].append(ids[i])
            duplicate_sets.setdefault(j, [ids[j]]).append(ids[i])
    block_owner: dict[str, set[str]] = {}
    for i, fp in enumerate(prints):
        if fp is not None and seen[fp.whole] == i:
            for b in fp.blocks:
                block_owner.setdefault(b, set()).add(fp.whole)
    overlapping = [
        ids[i]
        for i, fp in enumerate(prints)
        if fp is not None and seen[fp.whole] == i and any(len(block_owner[b]) > 1 for b in fp.blocks)
    ]
    problems["overlapping_tiles"] = overlapping
    labels = overlap_clusters(prints)
    sizes = Counter(labels[i] for i, fp in enumerate(prints) if fp is not None)
    report: dict = {
        "dataset": dataset.name,
        "pairs": len(dataset),
        "usable": len(dataset) - sum(len(problems[k]) for k in QA_SKIP_REASONS),
        "skipped": {k: len(problems[k]) for k in QA_SKIP_REASONS},
        **{k: len(v) for k, v in problems.items() if k not in QA_SKIP_REASONS},
        "overlap_clusters": sum(1 for s in sizes.values() if s > 1),
        "orphan_masks": len(_orphans(dataset)),
        "duplicate_sets": list(duplicate_sets.values())[:max_examples],
        "landslide_fraction": positive / pixels if pixels else 0.0,
        "examples": {k: v[:max_examples] for k, v in problems.items() if v},
    }
    return report


def _orphans(dataset: SegmentationDataset) -> list[Path]:
    if isinstance(dataset, ConcatDataset):
        return [p for m in dataset.members for p in _orphans(m)]
    return list(dataset.orphan_masks)


def _mask_file_kind(dataset: SegmentationDataset, i: int) -> str:
    """How pair ``i``'s mask file is encoded (re-reads the mask; only QA needs it)."""
    if isinstance(dataset, ConcatDataset):
        member, j = dataset._locate(i)
        return _mask_file_kind(member, j)
    rec = getattr(dataset, "records", [None] * (i + 1))[i]
    if rec is None or rec.mask is None:
        return "binary"
    try:
        values = _read_h5(rec.mask, "mask") if rec.mask.suffix == ".h5" else _read_first_band(rec.mask)
    except BadPair:
        return "other"
    return mask_kind(values)


def dataset_gsd(name: str, given: float = 0.0) -> float:
    """Ground sampling distance of dataset ``name`` in metres: ``given`` when set, else the known one."""
    if given > 0:
        return float(given)
    if name in KNOWN_GSD_M:
        return KNOWN_GSD_M[name]
    known = ", ".join(f"{k} {v:g}" for k, v in KNOWN_GSD_M.items())
    raise ConfigError(
        f"the ground sampling distance of dataset '{name}' is unknown: give it in data.gsd_m "
        f"(one value per data.roots entry, in metres; known: {known})"
    )
