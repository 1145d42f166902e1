"""The first stage of the pipeline: one input raster, read as model-ready windows.

Every decision about the input is taken once, in :class:`RasterSource` (which bands, how raw values
become [0, 1], what counts as nodata, the ground sampling distance), from cheap looks at the file: its
metadata and one small decimated read (served from an overview when the file has them). After that the
object is immutable, so any number of reader threads can share it; each thread opens its own dataset
handle with :meth:`RasterSource.open_handle`, because a GDAL dataset handle is not thread-safe.

This module is the source itself (opening, nodata and validity, windowed reads); the decisions it
takes are each in their own module: which bands (:mod:`edge_ls.io.bands`), how raw values are scaled
(:mod:`edge_ls.io.scaling`) and the ground distance of a pixel (:mod:`edge_ls.io.georeference`).
Their public names stay importable from here.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.crs
import rasterio.io
import rasterio.warp
from rasterio import Affine
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ConfigError, InputError, first_line
from edge_ls.io.bands import _select_bands
from edge_ls.io.georeference import (
    SCALE_DISTORTION_TOLERANCE,
    _warn_about_georeference,
    ground_pixel_size,
    impossible_georeference,
)
from edge_ls.io.scaling import (
    SCALED_FLOAT_REFLECTANCE_P98,
    STRETCH_PERCENTILES,
    BandScaling,
    _scaling,
    input_spread,
)
from edge_ls.pixel_math import normalize, to_unit_range

__all__ = [
    "MAX_PIXELS_ENV",
    "MAX_SCENE_PIXELS",
    "SAMPLE_MAX_PX",
    "SCALED_FLOAT_REFLECTANCE_P98",
    "SCALE_DISTORTION_TOLERANCE",
    "STRETCH_PERCENTILES",
    "BandScaling",
    "RasterSource",
    "ground_pixel_size",
    "max_scene_pixels",
    "truncation_problem",
]

log = logging.getLogger(__name__)

#: Longest side, in pixels, of the sample the scaling statistics and the all-nodata check are taken
#: from: about a million pixels per band is plenty for 2/98 percentiles and costs little memory even
#: on a 20k x 20k scene (GDAL serves the read from the nearest overview when the file has overviews).
SAMPLE_MAX_PX = 1024
#: A sample of fewer rows is read at once (the second handle would cost more than it saves).
SPLIT_MIN_ROWS = 256

#: Largest scene, in pixels, read without being asked: 2e10 is a 141k x 141k px mosaic (a 30k x 30k
#: scene is 0.9e9). Above it a header alone (a sparse 10^6 x 10^6 GeoTIFF is a 200 kB file) would
#: start reads that run for hours before any output; ``$EDGE_LS_MAX_PIXELS`` raises the limit.
MAX_SCENE_PIXELS = 20_000_000_000
MAX_PIXELS_ENV = "EDGE_LS_MAX_PIXELS"

_SUPPORTED_KINDS = ("u", "i", "f")
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class _MaskPlan:
    """Which validity sources apply to the selected bands, decided once so read() does no guessing.

    ``nodata`` holds, per selected band, the value compared in numpy on the data already read (no
    second GDAL pass); ``dataset_mask_band`` is a band whose per-dataset mask (alpha band, internal or
    external mask) is read once per window; ``band_mask_indexes`` are bands with their own mask bands.
    """

    nodata: tuple[float | None, ...]
    dataset_mask_band: int | None
    band_mask_indexes: tuple[int, ...]
    check_finite: bool


class RasterSource:
    """One input raster plus the decisions made about it once: bands, scaling, nodata."""

    def __init__(
        self,
        path: str | Path,
        spec: ModelSpec,
        bands: Sequence[int] | None = None,
        *,
        nodata: float | None = None,
    ) -> None:
        """Inspect ``path`` for ``spec``; ``nodata`` declares a nodata value the file does not carry."""
        self._target = str(path)
        self.path = Path(path)
        self.spec = spec
        self._closed = False
        with self.open_handle() as ds:
            self.width = ds.width
            self.height = ds.height
            _check_size(self.width, self.height, self.path.name)  # before any pixel is read
            self.crs: rasterio.crs.CRS | None = ds.crs
            self.transform: Affine = ds.transform
            self.georeferenced = self.crs is not None and not self.transform.is_identity
            if self.georeferenced:
                problem = impossible_georeference(self.crs, self.transform, self.width, self.height)
                if problem:
                    log.warning(
                        "%s: impossible georeference (%s): running in pixel space", self.path.name, problem
                    )
                    self.georeferenced = False
            _warn_about_georeference(ds, self.path.name, self.georeferenced)
            self.band_indexes = _select_bands(ds, spec, bands, self.path.name)
            dtypes = [ds.dtypes[i - 1] for i in self.band_indexes]
            _check_dtypes(ds, self.band_indexes, dtypes, self.path.name)
            self.dtype = dtypes[0] if len(set(dtypes)) == 1 else str(np.result_type(*dtypes))
            self._read_dtype = None if len(set(dtypes)) == 1 else self.dtype
            self._mask_plan = _mask_plan(ds, self.band_indexes, nodata)
            self.nodata_description = _describe_nodata(ds, self.band_indexes, self._mask_plan, nodata)
            sample, sample_valid, sampled_from = self._sample(ds)
            self.scaling = _scaling(ds, self.band_indexes, spec, sample, sample_valid, sampled_from)
            #: Contrast of the scene as the model will see it (see :func:`input_spread`).
            self.input_spread = input_spread(sample, sample_valid, self.scaling)
        size = None
        if self.georeferenced:
            size = ground_pixel_size(self.crs, self.transform, self.width, self.height)
        self.gsd_m: float | None = size[0] if size else None
        self.pixel_area_m2: float | None = size[1] if size else None
        self.gsd_description = size[2] if size else "none (no georeference)"
        self._offset = self.scaling.offset.astype(np.float32)
        self._scale = self.scaling.scale.astype(np.float32)
        self._mean = np.asarray(spec.mean, dtype=np.float32)
        self._std = np.asarray(spec.std, dtype=np.float32)

    def open_handle(self) -> rasterio.io.DatasetReader:
        """Open a NEW dataset handle (unshared): each reader thread owns one and closes it."""
        if self._closed:
            raise RuntimeError(f"RasterSource for {self.path.name} is closed")
        return _open(self._target, self.path)

    def read(
        self,
        handle: rasterio.io.DatasetReader,
        window: Window,
        out_shape: tuple[int, int] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, valid)``: model-ready float32 ``[C, h, w]`` (0.0 where invalid), bool ``[h, w]``.

        ``out_shape`` reads the window resampled to that many pixels (GDAL's average when shrinking,
        which skips nodata and uses overviews; bilinear when enlarging): reads at another GSD.
        """
        resampling = None
        if out_shape is not None:
            shrink = out_shape[0] * out_shape[1] < window.height * window.width
            resampling = Resampling.average if shrink else Resampling.bilinear
        try:
            raw = _read_bands(handle, self.band_indexes, self._read_dtype, window, out_shape, resampling)
            valid = _validity(handle, raw, self._mask_plan, window=window, out_shape=out_shape)
        except RasterioError as exc:
            where = f"col {int(window.col_off)}, row {int(window.row_off)}"
            raise InputError(
                f"{self.path.name}: cannot read the window at {where} ({_first_line(exc)}); "
                "the file may be truncated or corrupt"
            ) from None
        # Nodata values such as -3.4e38 overflow when scaled; they are zeroed below, so stay quiet.
        with np.errstate(over="ignore", invalid="ignore"):
            x = normalize(to_unit_range(raw, self._offset, self._scale), self._mean, self._std)
        if not valid.all():
            np.copyto(x, np.float32(0.0), where=~valid[np.newaxis])
        return x, valid

    def close(self) -> None:
        """Mark the source closed; it holds no handle, so this only stops new handles being opened."""
        self._closed = True

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RasterSource({self.path.name}, {self.width}x{self.height}, bands={self.band_indexes}, "
            f"{self.dtype}, scaling={self.scaling.method!r}, nodata={self.nodata_description!r})"
        )

    def _sample(self, ds: rasterio.io.DatasetReader) -> tuple[np.ndarray, np.ndarray, str]:
        """Read the decimated sample the statistics come from; refuse a raster with no valid pixel."""
        factor = max(1.0, max(self.width, self.height) / SAMPLE_MAX_PX)
        shape = (max(1, round(self.height / factor)), max(1, round(self.width / factor)))
        if factor == 1.0:
            sampled_from = "full read"
        elif any(level <= factor for level in ds.overviews(self.band_indexes[0])):
            sampled_from = "overview"  # GDAL serves a decimated read from an overview at least this fine
        else:
            sampled_from = "decimated read"
        out_shape = None if factor == 1.0 else shape
        try:
            data, valid = self._read_sample(ds, out_shape)
        except RasterioError as exc:
            raise InputError(
                f"{self.path.name} cannot be read ({_first_line(exc)}); the file may be truncated or corrupt"
            ) from None
        if not valid.any():
            where = "" if factor == 1.0 else f" in a {shape[1]}x{shape[0]} px {sampled_from} sample"
            raise InputError(
                f"{self.path.name} has no valid pixels (all nodata{where}; nodata: {self.nodata_description})"
            )
        return data, valid, sampled_from

    def _read_sample(
        self, ds: rasterio.io.DatasetReader, out_shape: tuple[int, int] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The sample's bands and validity, the bottom part read on a second handle beside the top.

        Why: on a scene without overviews a decimated read decodes every block of the file, serially
        before the first tile (0.18 s of a 4096² run, bench/tail_parts.py; seconds at 20k²); two
        halves decode in parallel.
        The split row keeps GDAL's sampling exact (:func:`sample_split`): the two halves hold the very
        pixels one read would (tests/io/test_source.py)."""
        split = sample_split(self.height, out_shape[0]) if out_shape is not None else None
        if split is None:
            data = _read_bands(ds, self.band_indexes, self._read_dtype, out_shape=out_shape)
            return data, _validity(ds, data, self._mask_plan, out_shape=out_shape)
        assert out_shape is not None
        rows, out_rows = split
        parts = (
            (Window(0, 0, self.width, rows), (out_rows, out_shape[1])),
            (Window(0, rows, self.width, self.height - rows), (out_shape[0] - out_rows, out_shape[1])),
        )

        def read(handle: rasterio.io.DatasetReader, window: Window, shape: tuple[int, int]):
            data = _read_bands(handle, self.band_indexes, self._read_dtype, window, shape)
            return data, _validity(handle, data, self._mask_plan, window=window, out_shape=shape)

        def read_bottom() -> tuple[np.ndarray, np.ndarray]:
            with self.open_handle() as handle:  # its own handle: rasterio handles are not thread-safe
                return read(handle, *parts[1])

        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sample") as pool:
            bottom = pool.submit(read_bottom)  # reads only: nothing to clean up if it outlives a stop
            top = read(ds, *parts[0])
            low = bottom.result()
        return np.concatenate([top[0], low[0]], axis=1), np.concatenate([top[1], low[1]], axis=0)


def sample_split(height: int, out_rows: int) -> tuple[int, int] | None:
    """(source rows, sample rows) of the top part of a decimated sample, or None: a split near the
    middle where ``rows / sample rows`` equals ``height / out_rows`` exactly, so each part is decimated
    with the whole read's ratio and the two parts hold the same pixels as one read would."""
    # k sample rows span k * height / out_rows source rows: whole rows when k is a multiple of step.
    step = out_rows // math.gcd(height, out_rows)
    k = round(out_rows / 2 / step) * step
    if not 0 < k < out_rows or out_rows < SPLIT_MIN_ROWS:
        return None
    return k * height // out_rows, k


#: End markers of formats whose truncation GDAL does not report (its PNG driver zero-fills the missing
#: rows of a truncated file without an error, GDAL 3.10), so a cut-off copy would look valid.
_END_MARKERS = {".png": b"IEND", ".jpg": b"\xff\xd9", ".jpeg": b"\xff\xd9"}


def truncation_problem(path: Path) -> str | None:
    """Say why a PNG/JPEG is truncated (no end marker), or None. Cheap: reads the last 64 bytes."""
    marker = _END_MARKERS.get(path.suffix.lower())
    if marker is None or not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, path.stat().st_size - 64))
            tail = fh.read()
    except OSError as exc:
        return f"{path.name} cannot be read ({exc.strerror or exc})"
    if marker not in tail:
        return f"{path.name} is truncated (no end marker): re-copy or re-download it"
    return None


def max_scene_pixels() -> int:
    """The pixel limit of one scene: ``$EDGE_LS_MAX_PIXELS`` when set, else :data:`MAX_SCENE_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return MAX_SCENE_PIXELS
    try:
        value = int(float(text))
    except (ValueError, OverflowError):
        value = 0
    if value < 1:
        raise ConfigError(f"{MAX_PIXELS_ENV}={text!r} is not a positive number of pixels")
    return value


def _check_size(width: int, height: int, name: str) -> None:
    """Refuse a scene above the pixel limit from its header, before a read could run for hours."""
    limit = max_scene_pixels()
    if width * height > limit:
        raise InputError(
            f"{name} is {width} x {height} px ({width * height:.3g} pixels), above the limit of "
            f"{limit:.3g} pixels per scene: cut it into parts (gdal_translate -srcwin) or raise the limit "
            f"with {MAX_PIXELS_ENV}"
        )


def _kind(mode: int) -> str:
    """What a non-regular file is, in a word."""
    for test, word in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return word
    return "not a file"


def _open(target: str, path: Path) -> rasterio.io.DatasetReader:
    """Open a raster or raise a one-line InputError saying what is wrong with it."""
    local = not (target.startswith("/vsi") or "://" in target or re.match(r"^[A-Za-z0-9_]{2,}:", target))
    if local:
        if not path.exists():
            raise InputError(f"input raster not found: {path}")
        mode = path.stat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # a FIFO would block GDAL's open forever
            raise InputError(
                f"{path.name} is not a regular file ({_kind(mode)}): give the raster file itself"
            )
        if path.is_file() and path.stat().st_size == 0:
            raise InputError(f"{path.name} is empty (0 bytes): not a raster")
        problem = truncation_problem(path)
        if problem:
            raise InputError(problem)
    try:
        # sharing=False: GDAL's shared handles must not be used from two threads at once.
        with _OPEN_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(target, sharing=False)
    except (RasterioError, OSError, ValueError) as exc:
        if local and path.is_dir():
            raise InputError(f"{path} is a directory, not a raster: give the raster file itself") from None
        reason = _first_line(exc)
        if "not recognized as being in a supported file format" in reason:
            raise InputError(f"{path.name} is not a raster GDAL can read (format not recognized)") from None
        raise InputError(f"{path.name} cannot be opened as a raster ({reason})") from None
    if ds.count == 0:
        subdatasets = list(ds.subdatasets)
        ds.close()
        hint = f": open one of its subdatasets, e.g. '{subdatasets[0]}'" if subdatasets else ""
        raise InputError(f"{path.name} holds no raster bands{hint}")
    return ds


def _check_dtypes(
    ds: rasterio.io.DatasetReader, indexes: tuple[int, ...], dtypes: list[str], name: str
) -> None:
    """Refuse pixel types that have no meaning as imagery (complex, bool)."""
    for index, dtype in zip(indexes, dtypes, strict=True):
        if np.dtype(dtype).kind not in _SUPPORTED_KINDS:
            raise InputError(
                f"{name} band {index} has pixel type {dtype}, which cannot be imagery: "
                "convert it to an integer or float type"
            )


def _mask_plan(ds: rasterio.io.DatasetReader, indexes: tuple[int, ...], nodata: float | None) -> _MaskPlan:
    """Decide, per selected band, where validity comes from (GDAL mask flags + a declared nodata)."""
    values: list[float | None] = []
    dataset_band: int | None = None
    band_masks: list[int] = []
    check_finite = False
    for index in indexes:
        flags = set(ds.mask_flag_enums[index - 1])
        dtype = np.dtype(ds.dtypes[index - 1])
        value = ds.nodatavals[index - 1] if MaskFlags.nodata in flags else None
        if nodata is not None:
            value = nodata
        if value is not None and math.isnan(value):
            check_finite, value = True, None
        values.append(_representable(value, dtype))
        if MaskFlags.per_dataset in flags:
            dataset_band = dataset_band or index
        elif not flags & {MaskFlags.all_valid, MaskFlags.nodata}:
            band_masks.append(index)
        check_finite = check_finite or dtype.kind == "f"
    return _MaskPlan(tuple(values), dataset_band, tuple(band_masks), check_finite)


def _representable(value: float | None, dtype: np.dtype) -> float | None:
    """A nodata value the band cannot hold (255.5 in uint8, -1 in uint16) marks nothing, as in GDAL."""
    if value is None:
        return None
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return value if value == int(value) and info.min <= value <= info.max else None
    if not math.isfinite(value):
        return value
    return value if abs(value) <= np.finfo(dtype).max else None


def _read_bands(
    ds: rasterio.io.DatasetReader,
    indexes: tuple[int, ...],
    mixed_dtype: str | None,
    window: Window | None = None,
    out_shape: tuple[int, int] | None = None,
    resampling: Resampling | None = None,
) -> np.ndarray:
    """One read of the selected bands; band by band only when their pixel types differ (rasterio
    refuses a multi-band read of mixed types)."""
    extra = {} if resampling is None else {"resampling": resampling}
    if mixed_dtype is None:
        shape = None if out_shape is None else (len(indexes), *out_shape)
        return ds.read(list(indexes), window=window, out_shape=shape, **extra)
    return np.stack(
        [ds.read(i, window=window, out_shape=out_shape, out_dtype=mixed_dtype, **extra) for i in indexes]
    )


def _validity(
    ds: rasterio.io.DatasetReader,
    raw: np.ndarray,
    plan: _MaskPlan,
    window: Window | None = None,
    out_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Valid where every selected band is valid: nodata compared in numpy, masks read at most once."""
    valid = np.ones(raw.shape[1:], dtype=bool)
    for band, value in zip(raw, plan.nodata, strict=True):
        if value is not None:
            valid &= band != np.asarray(value).astype(band.dtype)
    if plan.check_finite:
        valid &= np.isfinite(raw).all(axis=0)
    if plan.dataset_mask_band is not None:
        valid &= ds.read_masks(plan.dataset_mask_band, window=window, out_shape=out_shape) != 0
    if plan.band_mask_indexes:
        shape = None if out_shape is None else (len(plan.band_mask_indexes), *out_shape)
        masks = ds.read_masks(list(plan.band_mask_indexes), window=window, out_shape=shape)
        valid &= (masks != 0).all(axis=0)
    return valid


def _describe_nodata(
    ds: rasterio.io.DatasetReader, indexes: tuple[int, ...], plan: _MaskPlan, declared: float | None
) -> str:
    """Say in a few words where validity comes from: "nodata value 0", "alpha band 4", "NaN"..."""
    parts: list[str] = []
    values = sorted({v for v in plan.nodata if v is not None})
    if values:
        label = "nodata value" if len(values) == 1 else "nodata values"
        text = f"{label} {', '.join(f'{v:g}' for v in values)}"
        parts.append(text + (" (declared)" if declared is not None else ""))
    if plan.dataset_mask_band is not None:
        flags = set(ds.mask_flag_enums[plan.dataset_mask_band - 1])
        if MaskFlags.alpha in flags:
            alpha = [i for i, c in enumerate(ds.colorinterp, start=1) if c == ColorInterp.alpha]
            parts.append(f"alpha band {alpha[0]}" if alpha else "alpha band")
        elif Path(str(ds.name) + ".msk").exists():
            parts.append("external mask (.msk)")
        else:
            parts.append("dataset mask")
    if plan.band_mask_indexes:
        parts.append("per-band masks")
    if plan.check_finite:
        parts.append("NaN")
    return " + ".join(parts) if parts else "none"


def _first_line(exc: BaseException) -> str:
    """First line of the most specific message: rasterio wraps GDAL's reason as the cause."""
    if "see previous exception" in str(exc).lower() and exc.__cause__ is not None:
        exc = exc.__cause__
    return first_line(exc)
