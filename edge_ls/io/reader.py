"""The first stage of the pipeline: one input raster, read as model-ready windows.

Every decision about the input is taken once, in :class:`RasterSource` (which bands, how raw values
become [0, 1], what counts as nodata, the ground sampling distance), from cheap looks at the file: its
metadata and one small decimated read (served from an overview when the file has them). After that the
object is immutable, so any number of reader threads can share it; each thread opens its own dataset
handle with :meth:`RasterSource.open_handle`, because a GDAL dataset handle is not thread-safe.
"""

from __future__ import annotations

import logging
import math
import re
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
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from edge_ls.artifact import KNOWN_BANDS, ModelSpec
from edge_ls.errors import InputError
from edge_ls.pixel_math import normalize, to_unit_range

log = logging.getLogger(__name__)

#: Longest side, in pixels, of the sample the scaling statistics and the all-nodata check are taken
#: from: about a million pixels per band is plenty for 2/98 percentiles and costs little memory even
#: on a 20k x 20k scene (GDAL serves the read from the nearest overview when the file has overviews).
SAMPLE_MAX_PX = 1024
#: Percentiles of the stretch applied to non-8-bit imagery fed to an ``8bit`` model.
STRETCH_PERCENTILES = (2.0, 98.0)
#: A float raster fed to a ``reflectance`` model whose 98th percentile exceeds this is not reflectance
#: in [0, 1] but integer reflectance stored as floats (as the real Chattogram Sentinel-2 export is):
#: it is divided by ``reflectance_scale`` instead of being clipped to 1 everywhere.
SCALED_FLOAT_REFLECTANCE_P98 = 1.5
#: A projection whose true ground pixel size at the scene centre differs from the nominal one by more
#: than this (Web Mercator away from the equator) reports the true size, so km² and GSD are honest.
SCALE_DISTORTION_TOLERANCE = 0.02

_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3
_SUPPORTED_KINDS = ("u", "i", "f")
_OPEN_LOCK = threading.Lock()

#: Band descriptions understood as model band names (compared lower-case, without separators).
#: Sentinel-2 names are accepted in their two-digit form only (B04, B8A): "B4"/"B5" mean different
#: bands on Landsat, so guessing there would silently swap bands.
_DESCRIPTION_NAMES = {
    **{name: name for name in KNOWN_BANDS},
    "grey": "gray",
    "nearinfrared": "nir",
    "nearir": "nir",
    "coastalaerosol": "coastal",
    "watervapor": "watervapour",
    "elevation": "dem",
    "b01": "coastal",
    "b02": "blue",
    "b03": "green",
    "b04": "red",
    "b05": "rededge1",
    "b06": "rededge2",
    "b07": "rededge3",
    "b08": "nir",
    "b8a": "nir08",
    "b09": "watervapour",
    "b11": "swir1",
    "b12": "swir2",
}
_COLORINTERP_NAMES = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.gray: "gray",
    ColorInterp.alpha: "alpha",
}


@dataclass(frozen=True)
class BandScaling:
    """How raw values become [0, 1] per band: ``unit = clip((raw - offset) * scale, 0, 1)``."""

    offset: np.ndarray
    scale: np.ndarray
    method: str


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
            self.crs: rasterio.crs.CRS | None = ds.crs
            self.transform: Affine = ds.transform
            self.georeferenced = self.crs is not None and not self.transform.is_identity
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

    def read(self, handle: rasterio.io.DatasetReader, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, valid)``: model-ready float32 ``[C, h, w]`` (0.0 where invalid), bool ``[h, w]``."""
        try:
            raw = _read_bands(handle, self.band_indexes, self._read_dtype, window=window)
            valid = _validity(handle, raw, self._mask_plan, window=window)
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
            data = _read_bands(ds, self.band_indexes, self._read_dtype, out_shape=out_shape)
            valid = _validity(ds, data, self._mask_plan, out_shape=out_shape)
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


def ground_pixel_size(
    crs: rasterio.crs.CRS | None, transform: Affine, width: int, height: int
) -> tuple[float, float, str] | None:
    """Return ``(gsd_m, pixel_area_m2, how)`` at the scene centre, or None when it cannot be known.

    Projected CRSs use the nominal pixel size in their linear unit converted to metres, unless the
    projection distorts distance at the scene centre by more than ``SCALE_DISTORTION_TOLERANCE`` (Web
    Mercator); then, as for geographic CRSs, the pixel's sides are measured on the WGS84 ellipsoid
    (an approximation for other datums, good to well under 1% for a pixel size).
    """
    if crs is None:
        return None
    col = (transform.a, transform.d)  # CRS units per pixel step along a row (x)
    row = (transform.b, transform.e)  # CRS units per pixel step down a column (y)
    cx, cy = transform @ (width / 2.0, height / 2.0)
    if crs.is_geographic:
        deg = _degrees_per_unit(crs)
        lon_lat = (cx * deg, cy * deg)
        sizes = _ellipsoid_pixel(lon_lat, (col[0] * deg, col[1] * deg), (row[0] * deg, row[1] * deg))
        if sizes is None:
            return None
        return (*sizes, f"degrees to metres at latitude {lon_lat[1]:.2f} (WGS84 ellipsoid)")
    if not crs.is_projected:
        return None
    try:
        unit, factor = crs.linear_units_factor
    except RasterioError:
        return None
    gx, gy = math.hypot(*col) * factor, math.hypot(*row) * factor
    nominal = ((gx + gy) / 2.0, abs(col[0] * row[1] - col[1] * row[0]) * factor * factor)
    how = f"pixel size in {unit}" if factor == 1.0 else f"pixel size in {unit} (x {factor:g} m)"
    true = _true_pixel_size(crs, (cx, cy), col, row)
    if true is not None and abs(true[0] / nominal[0] - 1.0) > SCALE_DISTORTION_TOLERANCE:
        lat = true[2]
        return (
            true[0],
            true[1],
            f"measured on the WGS84 ellipsoid at latitude {lat:.2f}, where one {unit} of this "
            f"projection is {true[0] / nominal[0]:.3f} m on the ground",
        )
    return (*nominal, how)


def _true_pixel_size(
    crs: rasterio.crs.CRS, centre: tuple[float, float], col: tuple[float, float], row: tuple[float, float]
) -> tuple[float, float, float] | None:
    """Measure one pixel at ``centre`` on the ground: project its corners to lon/lat, then to metres."""
    xs = [centre[0], centre[0] + col[0], centre[0] + row[0]]
    ys = [centre[1], centre[1] + col[1], centre[1] + row[1]]
    try:
        lons, lats = rasterio.warp.transform(crs, "EPSG:4326", xs, ys)
    except Exception:  # PROJ cannot relate every CRS (engineering, broken WKT): keep the nominal size
        return None
    steps = [(lons[i] - lons[0], lats[i] - lats[0]) for i in (1, 2)]
    sizes = _ellipsoid_pixel((lons[0], lats[0]), steps[0], steps[1])
    return None if sizes is None else (*sizes, lats[0])


def _ellipsoid_pixel(
    lon_lat: tuple[float, float], col_deg: tuple[float, float], row_deg: tuple[float, float]
) -> tuple[float, float] | None:
    """Side length mean and area in metres of a pixel given its sides in degrees (lon, lat)."""
    lat = lon_lat[1]
    if not (math.isfinite(lat) and -90.0 < lat < 90.0):
        return None
    phi = math.radians(lat)
    w = math.sqrt(1.0 - _WGS84_E2 * math.sin(phi) ** 2)
    per_deg_lon = math.radians(1.0) * _WGS84_A / w * math.cos(phi)
    per_deg_lat = math.radians(1.0) * _WGS84_A * (1.0 - _WGS84_E2) / w**3
    cx, cy = col_deg[0] * per_deg_lon, col_deg[1] * per_deg_lat
    rx, ry = row_deg[0] * per_deg_lon, row_deg[1] * per_deg_lat
    gsd = (math.hypot(cx, cy) + math.hypot(rx, ry)) / 2.0
    area = abs(cx * ry - cy * rx)
    return (gsd, area) if gsd > 0 and math.isfinite(gsd) else None


def _degrees_per_unit(crs: rasterio.crs.CRS) -> float:
    """Degrees per angular unit of a geographic CRS (1 for degrees; grads exist)."""
    try:
        _, radians_per_unit = crs.units_factor
    except RasterioError:
        return 1.0
    return math.degrees(radians_per_unit) if radians_per_unit else 1.0


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


def _open(target: str, path: Path) -> rasterio.io.DatasetReader:
    """Open a raster or raise a one-line InputError saying what is wrong with it."""
    local = not (target.startswith("/vsi") or "://" in target or re.match(r"^[A-Za-z0-9_]{2,}:", target))
    if local:
        if not path.exists():
            raise InputError(f"input raster not found: {path}")
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


def _warn_about_georeference(ds: rasterio.io.DatasetReader, name: str, georeferenced: bool) -> None:
    """Say why a raster that looks geographic will still run in pixel space."""
    if georeferenced:
        return
    if ds.gcps[0] or ds.rpcs:
        log.warning("%s has GCPs/RPCs but no geotransform: warp it (gdalwarp) to georeference outputs", name)
    elif ds.crs is None and not ds.transform.is_identity:
        log.warning("%s has a geotransform but no CRS: outputs will be in pixel space", name)


def _band_names(ds: rasterio.io.DatasetReader) -> list[str | None]:
    """Model band name of each raster band, from its description, else its colour interpretation."""
    names: list[str | None] = []
    for desc, interp in zip(ds.descriptions, ds.colorinterp, strict=True):
        name = _name_from_description(desc) if desc else None
        names.append(name or _COLORINTERP_NAMES.get(interp))
    return names


def _name_from_description(desc: str) -> str | None:
    """Map a band description ("NIR", "B08", "Red band", "Near Infrared") to a model band name."""
    text = desc.lower()
    key = re.sub(r"[^a-z0-9]", "", text)
    if key in _DESCRIPTION_NAMES:
        return _DESCRIPTION_NAMES[key]
    tokens = re.findall(r"[a-z0-9]+", text)
    if "edge" in tokens or "infrared" in tokens:
        return "nir" if {"near", "infrared"} <= set(tokens) else None
    hits = {_DESCRIPTION_NAMES[t] for t in tokens if t in _DESCRIPTION_NAMES}
    return hits.pop() if len(hits) == 1 else None


def _band_summary(ds: rasterio.io.DatasetReader) -> str:
    """ "1: red, 2: green, 3: blue, 4: alpha" - what the raster offers, for error messages."""
    parts = []
    for i, (desc, interp) in enumerate(zip(ds.descriptions, ds.colorinterp, strict=True), start=1):
        label = interp.name + (f" '{desc}'" if desc else "")
        parts.append(f"{i}: {label}")
    return ", ".join(parts)


def _select_bands(
    ds: rasterio.io.DatasetReader, spec: ModelSpec, bands: Sequence[int] | None, name: str
) -> tuple[int, ...]:
    """Pick the raster bands feeding the model, in the model's order (see the module rules)."""
    need = len(spec.bands)
    wanted = ", ".join(spec.bands)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) != need:
            raise InputError(
                f"--bands gives {len(chosen)} band(s) but model '{spec.name}' needs {need} ({wanted})"
            )
        bad = [b for b in chosen if not 1 <= b <= ds.count]
        if bad:
            raise InputError(
                f"--bands {','.join(map(str, chosen))}: {name} has bands 1..{ds.count}, not {bad[0]}"
            )
        return chosen
    names = _band_names(ds)
    matched = [[i for i, n in enumerate(names, start=1) if n == b] for b in spec.bands]
    if all(len(m) == 1 for m in matched) and len({m[0] for m in matched}) == need:
        return tuple(m[0] for m in matched)
    usable = [i for i, n in enumerate(names, start=1) if n != "alpha"]
    offered = f"{name} has {ds.count} band(s) ({_band_summary(ds)})"
    if ColorInterp.palette in ds.colorinterp:
        raise InputError(
            f"{offered}: palette colours must be expanded first, e.g. gdal_translate -expand rgb in out.tif"
        )
    if len(usable) < need:
        raise InputError(f"model '{spec.name}' needs {need} band(s) ({wanted}) but {offered}")
    if len(usable) == need:
        # Taking bands in order is a guess: refuse it when the file names them otherwise (e.g. BGR).
        conflicts = [
            f"band {i} is {n}, not {b}"
            for i, b in zip(usable, spec.bands, strict=True)
            if (n := names[i - 1]) is not None and n != "gray" and n != b
        ]
        if not conflicts:
            return tuple(usable)
        raise InputError(
            f"model '{spec.name}' needs {wanted} but {offered} ({'; '.join(conflicts)}): "
            "choose them with --bands"
        )
    example = ",".join(str(i) for i in usable[:need])
    raise InputError(
        f"model '{spec.name}' needs {need} band(s) ({wanted}) and {offered}, which cannot be matched by "
        f"name: choose them with --bands, e.g. --bands {example}"
    )


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
) -> np.ndarray:
    """One read of the selected bands; band by band only when their pixel types differ (rasterio
    refuses a multi-band read of mixed types)."""
    if mixed_dtype is None:
        shape = None if out_shape is None else (len(indexes), *out_shape)
        return ds.read(list(indexes), window=window, out_shape=shape)
    return np.stack([ds.read(i, window=window, out_shape=out_shape, out_dtype=mixed_dtype) for i in indexes])


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


def _scaling(
    ds: rasterio.io.DatasetReader,
    indexes: tuple[int, ...],
    spec: ModelSpec,
    sample: np.ndarray,
    valid: np.ndarray,
    sampled_from: str,
) -> BandScaling:
    """Per-band offset/scale for ``spec.input_range``, from the dtype and the sample's valid pixels."""
    offsets: list[float] = []
    scales: list[float] = []
    methods: list[str] = []
    rs = spec.reflectance_scale
    for pos, index in enumerate(indexes):
        dtype = np.dtype(ds.dtypes[index - 1])
        values = sample[pos][valid]
        gdal_scale, gdal_offset = ds.scales[index - 1], ds.offsets[index - 1]
        if spec.input_range == "8bit":
            if dtype == np.uint8:
                offset, scale, method = 0.0, 1.0 / 255.0, "uint8/255"
            else:
                offset, scale, method = _stretch(values, sampled_from)
        elif (gdal_scale, gdal_offset) != (1.0, 0.0) and gdal_scale:
            # reflectance = raw * scale + offset  ==  (raw - (-offset / scale)) * scale
            offset, scale, method = -gdal_offset / gdal_scale, gdal_scale, "GDAL scale/offset metadata"
        elif dtype.kind in "ui":
            offset, scale, method = 0.0, 1.0 / rs, f"reflectance/{rs:g}"
            if dtype == np.uint8:
                log.warning("%s band %d is 8-bit but the model expects reflectance", ds.name, index)
        else:
            p98 = float(np.percentile(values, 98.0))
            if p98 > SCALED_FLOAT_REFLECTANCE_P98:
                offset, scale = 0.0, 1.0 / rs
                method = f"reflectance/{rs:g} (floats > {SCALED_FLOAT_REFLECTANCE_P98:g}: scaled integers)"
            else:
                offset, scale, method = 0.0, 1.0, "float as is"
        offsets.append(offset)
        scales.append(scale)
        methods.append(method)
    if len(set(methods)) == 1:
        described = methods[0]
    else:
        described = "; ".join(f"band {i}: {m}" for i, m in zip(indexes, methods, strict=True))
    return BandScaling(
        offset=np.asarray(offsets, dtype=np.float32),
        scale=np.asarray(scales, dtype=np.float32),
        method=described,
    )


def input_spread(sample: np.ndarray, valid: np.ndarray, scaling: BandScaling) -> float:
    """The largest per-band 2-98 percentile spread of the sample, in the model's [0, 1] input units.

    A percentile-stretched band always spans [0, 1] after scaling, so its spread is measured before
    the stretch: at most 2 integer levels (or a relative 1e-3 for floats) counts as no contrast (0).
    A constant or near-constant scene (blank tile, saturated or uniform image) scores below ~0.01;
    what a model predicts on it means nothing.
    """
    spreads = []
    for pos in range(sample.shape[0]):
        values = sample[pos][valid]
        lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
        if "percentile" in scaling.method:
            flat = (
                hi - lo <= 2 if sample.dtype.kind in "ui" else hi - lo <= 1e-3 * max(abs(hi), abs(lo), 1e-12)
            )
            spreads.append(0.0 if flat else 1.0)
        else:
            spreads.append((hi - lo) * abs(float(scaling.scale[pos])))
    return max(spreads) if spreads else 0.0


def _stretch(values: np.ndarray, sampled_from: str) -> tuple[float, float, str]:
    """Percentile stretch of one band's valid sample values to [0, 1]."""
    lo, hi = (float(v) for v in np.percentile(values, STRETCH_PERCENTILES))
    method = f"percentile {STRETCH_PERCENTILES[0]:g}-{STRETCH_PERCENTILES[1]:g} ({sampled_from})"
    if hi <= lo:  # a constant band carries no contrast: map it to 0 rather than divide by zero
        return lo, 1.0, method + ", constant band"
    return lo, 1.0 / (hi - lo), method


def _first_line(exc: BaseException) -> str:
    """First line of the most specific message: rasterio wraps GDAL's reason as the cause."""
    if "see previous exception" in str(exc).lower() and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
