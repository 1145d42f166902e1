"""The GIS outputs of one scene, written band by band and committed atomically.

Files (all in the input's CRS and transform; pixel space when the input has no georeference):

* ``probability.tif``: COG, ZSTD + predictor, 512-px tiles, AVERAGE overviews (reduced while the rows
  stream, by GDAL's rule: :mod:`edge_ls.io.overviews`; the COG copy only compresses). By default
  (``layers="percent"``) **uint8 percent**: 0..100 = round(100 x probability), band scale 0.01 (GDAL
  and QGIS unscale it to 0..1), **nodata 255**; the way the Copernicus High Resolution Layers publish
  their confidence. One percent is far finer than any calibration error of these models, and the
  layer costs a quarter of the bytes to compress and to build overviews for (bench/cog_codecs.py:
  ~2x less CPU than float32 with ZSTD). ``layers="float32"``: float32 0..1, **nodata -1.0** (not NaN: -1 lies
  outside [0, 1], so it cannot be mistaken for a probability, and unlike NaN it is handled the same
  way by every GIS).
* ``mask.tif``: COG, uint8, 1 = landslide (``prob >= threshold``, decided on the float probability
  before any rounding), 0 = not, **nodata 255**, MODE overviews.
* ``confidence.tif``: COG, ``pixel_math.confidence(prob, threshold)``, encoded like the probability.
  Every COG describes itself: band description, scale/offset, nodata, and GDAL metadata tags
  (``OutputOptions.tags``: model, tier, precision, threshold, temperature, edge-ls version, input);
  the mask carries a colour table. ``probability.qml`` beside the probability is a QGIS style (the
  quicklook's ramp on 0..1), which QGIS applies when it opens ``probability.tif``.
* ``detections.geojson``: one Feature per 4-connected landslide region of the stitched mask
  (vectorized in a streaming way by ``polygons.StreamingPolygonizer``, on its own thread:
  ``detections.DetectionWriter``; finalize waits for it before the COG copies), properties ``id``,
  ``area_m2``, ``mean_prob``, ``max_prob``, ``mean_confidence``. RFC 7946: WGS 84 lon/lat, 7
  decimals, right-hand rings, no ``crs`` member. ``area_m2`` is pixel count x pixel area measured
  in the input's CRS (never in degrees; on the WGS 84 ellipsoid for a geographic or strongly
  distorting CRS, see ``georeference.ground_pixel_size``).
* ``detections.gpkg``: the same polygons and fields in the input's own CRS (a GeoPackage,
  :mod:`edge_ls.io.gpkg`), for GIS work in the scene's projection.
* Without georeference there is no GeoJSON (a GeoJSON has no way to say "no CRS": readers would take
  the pixel coordinates for degrees): ``detections_pixel.gpkg`` holds the polygons in pixel
  (column, row) coordinates with the GeoPackage's "undefined cartesian" SRS and ``area_px`` in pixels.
* ``quicklook.png``: the probability on a magma-like ramp (grey = nodata) with the mask outlined in
  cyan, at most ``quicklook_max_size`` px on its long side, from cell means accumulated while
  streaming (:mod:`edge_ls.io.quicklook`), with a title, a legend and (georeferenced) a scale bar.
* ``report.json``: the caller's report plus ``outputs`` (the file names) and ``output_stats``.

Pixels with ``valid == False`` (or a non-finite probability) are nodata in every raster and never
part of a polygon.

Atomicity, as a set: everything is written into a hidden temporary folder inside ``out_dir`` (same
file system, so renames are atomic). ``commit`` writes ``report.json`` (and ``item.json``) there,
renames the folder to a version folder ``.edge_ls.<id>.v-<pid>``, then switches one pointer: the
relative symlink ``.current`` -> that folder, created under a temporary name and ``os.replace``-d
over the old one. The plain names (``probability.tif``, ..., ``report.json``) are relative symlinks
``NAME -> .current/NAME``, created once (before the switch, so a name new to this set dangles until
then): a kill at any moment leaves the folder showing either the whole old set or the whole new set,
never a mix, and ``report.json`` never disappears once there. The old version folder is removed after
the switch. GDAL, QGIS and rasterio open ``probability.tif`` through the link. A folder written by an
older edge-ls (plain files) is migrated once: its ``report.json`` goes first and comes back last.
Where symbolic links cannot be made (Windows without the privilege, some network shares), the files
are renamed into place one by one instead, report.json removed first and back last.
Any failure (disk full included) removes the temporary folder and raises ``OutputError``; outputs of
an earlier run stay untouched until a commit replaces them. Version folders of killed runs (their pid
gone, not pointed to) are removed by the next run, except a temporary folder whose progress record
(:mod:`edge_ls.io.progress`) has the new set's ``resume_key``: that one is reopened and its durable
rows kept (:meth:`OutputSet.checkpoint` records them; a resumed set also keeps ``stream.resume.raw``,
the float probability, until :meth:`OutputSet.finalize`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import json
import math
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from xml.sax.saxutils import escape as xml_escape

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import RasterioError

from edge_ls.errors import OutputError
from edge_ls.io import progress
from edge_ls.io.detections import (
    DetectionWriter,
    GeoJSONStream,
    GeoPackageRegions,
    RegionSink,
    wgs84_projector,
)
from edge_ls.io.overviews import Kind, OverviewPyramid
from edge_ls.io.polygons import StreamingPolygonizer
from edge_ls.io.quicklook import (
    Annotation,
    CellMeans,
    annotate,
    encode_png,
    probability_qml,
    quicklook_shape,
    render_rgb,
)
from edge_ls.pixel_math import confidence

#: Nodata of the float rasters (probability, confidence): outside [0, 1], unlike NaN understood by every GIS.
FLOAT_NODATA = -1.0
#: Nodata of the percent rasters (uint8 0..100).
PERCENT_NODATA = 255
#: Band scale of the percent rasters: value x 0.01 = probability (GDAL's unscaling convention).
PERCENT_SCALE = 0.01
#: How the probability and confidence rasters are stored (see the module docstring).
LAYER_ENCODINGS = ("percent", "float32")
#: Nodata of the mask raster.
MASK_NODATA = 255
#: Tile size of the COGs (and of the streamed intermediates, so the COG copy reads whole tiles).
BLOCK_SIZE = 512
#: GDAL compression threads of each COG copy (measured on 2 cores; see ``OutputSet._to_cog``).
COG_THREADS = 2

PROBABILITY = "probability.tif"
MASK = "mask.tif"
CONFIDENCE = "confidence.tif"
#: Only when the deployment asks for it (``[outputs] uncertainty``): per-pixel standard deviation of the
#: calibrated probability over D4 test-time augmentations, encoded like the probability.
UNCERTAINTY = "uncertainty.tif"
DETECTIONS = "detections.geojson"
DETECTIONS_GPKG = "detections.gpkg"
DETECTIONS_PIXEL = "detections_pixel.gpkg"
PROBABILITY_STYLE = "probability.qml"
QUICKLOOK = "quicklook.png"
REPORT = "report.json"
#: The scene's STAC Item (:mod:`edge_ls.io.stac`), when the set is given an item builder.
ITEM = "item.json"
#: The float probability a resumable set keeps beside its layers (never committed).
RESUME = "resume.tif"
#: The pointer to the committed version folder (see the module docstring).
CURRENT = ".current"
#: Logical name -> file name, in the order they are moved into place (report.json last).
FILES = {
    "probability": PROBABILITY,
    "probability_style": PROBABILITY_STYLE,
    "mask": MASK,
    "confidence": CONFIDENCE,
    "detections": DETECTIONS,
    "detections_gpkg": DETECTIONS_GPKG,
    "quicklook": QUICKLOOK,
    "report": REPORT,
}
#: The files of a raster without georeference: pixel-space vectors only, no GeoJSON claiming a CRS.
PIXEL_FILES = {
    **{k: v for k, v in FILES.items() if k not in ("detections", "detections_gpkg", "report")},
    "detections_pixel": DETECTIONS_PIXEL,
    "report": REPORT,
}
#: What each raster's band holds (its GDAL band description).
BAND_DESCRIPTIONS = {
    PROBABILITY: "landslide probability (temperature-calibrated)",
    MASK: "landslide mask (1 = landslide, 0 = not)",
    CONFIDENCE: "confidence: distance of the probability from the decision threshold",
    UNCERTAINTY: "uncertainty: std of the calibrated probability over D4 test-time augmentations",
}
#: Colour table of the mask: transparent background, red landslides (nodata 255 transparent too).
MASK_COLORS = {0: (0, 0, 0, 0), 1: (230, 30, 30, 255), MASK_NODATA: (0, 0, 0, 0)}

#: Overview resampling per raster: averages for continuous values, mode for the class mask (streamed
#: with the rows by :mod:`edge_ls.io.overviews`, GDAL's rule).
_OVERVIEWS: dict[str, Kind] = {
    PROBABILITY: "average",
    MASK: "mode",
    CONFIDENCE: "average",
    UNCERTAINTY: "average",
}
#: Errors that mean "the outputs could not be written" (GDAL's own errors included).
_WRITE_ERRORS: tuple[type[BaseException], ...] = (OSError, RasterioError, CPLE_BaseError, sqlite3.Error)
#: Free space under which a GDAL write failure is reported as a full disk.
_FULL_DISK_BYTES = 1 << 20
Background = Callable[[int, int], "np.ndarray | None"]
#: Builds the STAC Item of a committed set from the set and its full report.
ItemBuilder = Callable[["OutputSet", dict], dict]


#: Rows processed at once by write_rows (bounds its scratch memory independently of the band height).
#: The writer's scratch (~25 bytes a pixel) and the vectorizer's chunks are the part of peak memory that
#: grows with the scene's width after the blender's rows: 32 rather than 64 rows took a 20k² edge-nano
#: run from 622 to 596 MiB (10k²: 573-577 to 561) for ~9% more vectorizer CPU (26.6 vs 24.4 s at 10k²;
#: ``python bench/rss_probe.py SCENE OUT --stages``).
CHUNK_ROWS = 32


@dataclass(frozen=True)
class OutputOptions:
    threshold: float  # decision threshold (from the model spec)
    min_area_m2: float = 0.0  # smaller polygons are dropped (pixel units^2 when not georeferenced)
    simplify_tolerance: float = 0.0  # CRS units (pixels when not georeferenced)
    quicklook_max_size: int = 1024  # longest side of the PNG overlay
    layers: str = "percent"  # probability/confidence encoding, one of LAYER_ENCODINGS
    #: GDAL metadata tags of every COG (model, tier, precision, threshold, temperature, version, input).
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Title of the quicklook (scene, model, date); empty: no title line.
    title: str = ""
    #: Also write uncertainty.tif (write_rows then takes ``uncertainty=`` with every band).
    uncertainty: bool = False

    def __post_init__(self) -> None:
        if self.layers not in LAYER_ENCODINGS:
            raise ValueError(f"layers must be one of {LAYER_ENCODINGS}, got {self.layers!r}")

    @property
    def layer_dtype(self) -> str:
        return "uint8" if self.layers == "percent" else "float32"

    @property
    def layer_nodata(self) -> float:
        return PERCENT_NODATA if self.layers == "percent" else FLOAT_NODATA


def _reason(exc: BaseException, folder: Path, room_needed: int) -> str:
    """One line saying why a write failed: the OS message when there is one.

    GDAL reports a full disk as e.g. "TIFFAppendToStrip:Seek error" and deletes its partial file, so
    a GDAL failure on a folder with less free space than the raster could need is reported as the
    full disk it most likely is (GDAL's words kept in brackets).
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        return os.strerror(exc.errno)
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    with contextlib.suppress(OSError):
        if shutil.disk_usage(folder).free < max(room_needed, _FULL_DISK_BYTES):
            return f"{os.strerror(errno.ENOSPC)} (GDAL: {text})"
    return text


class _RawSink:
    """One streamed intermediate raster: a raw row-major file written by Python, read by GDAL via a VRT.

    Why not a GeoTIFF written by GDAL: rasterio reports no error when GDAL's final flush fails at
    ``close()`` (measured on a full tmpfs: the file is silently truncated), so a disk that fills up
    late would yield a corrupt raster that looks complete. Plain ``os.pwrite`` raises ``OSError`` on
    every failed write, and the whole file is reserved up front (``posix_fallocate``), so a disk too
    small for the intermediates fails at construction, before any inference. The cost is uncompressed
    scratch space: 3 bytes per pixel for the three rasters (9 with float32 layers), freed at commit.
    """

    def __init__(
        self,
        path: Path,
        *,
        dtype: str,
        nodata: float,
        width: int,
        height: int,
        crs,
        transform,
        scale: float | None = None,
        look: _BandLook | None = None,
        keep: bool = False,
        overviews: Kind | None = None,
    ):
        """``keep``: reopen the file as it is (a resumed scene's durable rows), not truncated.
        ``overviews``: also stream the COG's overview levels (:mod:`edge_ls.io.overviews`), each a raw
        file of its own that the VRT names as the band's overview; never kept (a resumed set re-feeds
        its durable rows through :meth:`add_overviews`)."""
        self.path = path
        self.vrt = path.with_suffix(".vrt")
        self._dtype = np.dtype(dtype).newbyteorder("<")
        self._row_bytes = width * self._dtype.itemsize
        flags = os.O_RDWR | os.O_CREAT | (0 if keep else os.O_TRUNC)
        self._fd: int | None = os.open(path, flags, 0o644)
        self._pyramid: OverviewPyramid | None = None
        #: One sink per overview level, finest first.
        self.levels: list[_RawSink] = []
        try:
            _reserve(self._fd, self._row_bytes * height)
            if overviews is not None:
                self._pyramid = OverviewPyramid(
                    width, height, block=BLOCK_SIZE, kind=overviews, nodata=nodata
                )
                for i, (w, h) in enumerate(self._pyramid.sizes, start=1):
                    level = path.with_name(f"{path.stem}.ovr{i}{path.suffix}")
                    self.levels.append(
                        _RawSink(
                            level, dtype=dtype, nodata=nodata, width=w, height=h, crs=None, transform=None
                        )
                    )
        except BaseException:
            self.discard()
            raise
        xml = _raw_vrt(
            path.name, self._dtype, nodata, width, height, crs, transform, scale, look or _BandLook(),
            overviews=[level.vrt.name for level in self.levels],
        )  # fmt: skip
        self.vrt.write_text(xml)

    def write(self, row_off: int, band: np.ndarray) -> None:
        """Write rows at ``row_off`` (and the overview rows they finish: rows must come in order)."""
        assert self._fd is not None
        data = memoryview(np.ascontiguousarray(band, dtype=self._dtype)).cast("B")
        offset = row_off * self._row_bytes
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written
        self.add_overviews(band)

    def add_overviews(self, band: np.ndarray) -> None:
        """Feed the next rows to the overview levels only (a resumed set's durable rows)."""
        if self._pyramid is not None:
            for level, first, rows in self._pyramid.add(np.asarray(band, dtype=self._dtype)):
                self.levels[level].write(first, rows)

    def sync(self) -> None:
        """Make the rows written so far durable (before a progress record vouches for them)."""
        assert self._fd is not None
        os.fsync(self._fd)

    def read(self, row_off: int, rows: int) -> np.ndarray:
        """Rows ``[row_off, row_off + rows)`` as written (a resumed scene re-reads its durable rows)."""
        count = rows * (self._row_bytes // self._dtype.itemsize)
        return np.fromfile(self.path, dtype=self._dtype, count=count, offset=row_off * self._row_bytes)

    def close(self) -> None:
        for level in self.levels:
            level.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def unlink(self) -> None:
        """Remove the raw files and VRTs (after the COG copy)."""
        for sink in [self, *self.levels]:
            sink.path.unlink()
            sink.vrt.unlink()

    def discard(self) -> None:
        for level in self.levels:
            level.discard()
        with contextlib.suppress(OSError):
            self.close()


def _reserve(fd: int, size: int) -> None:
    """Reserve the file's blocks now, so a full disk shows up before the run, not in the middle."""
    if size == 0:
        return
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
        os.ftruncate(fd, size)  # file system without fallocate: sparse file, errors come at write time


_GDAL_TYPES = {"float32": "Float32", "uint8": "Byte"}


@dataclass(frozen=True)
class _BandLook:
    """What makes a COG self-describing, carried by its VRT into the COG copy (GDAL copies band
    description, metadata, scale/offset, nodata and colour table along)."""

    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    colors: Mapping[int, tuple[int, int, int, int]] | None = None

    def dataset_xml(self) -> str:
        items = "".join(
            f'    <MDI key="{xml_escape(str(k), {chr(34): "&quot;"})}">{xml_escape(str(v))}</MDI>\n'
            for k, v in self.tags.items()
        )
        return f"  <Metadata>\n{items}  </Metadata>\n" if items else ""

    def band_xml(self) -> str:
        out = f"    <Description>{xml_escape(self.description)}</Description>\n" if self.description else ""
        if self.colors:
            entries = "".join(
                '      <Entry c1="{}" c2="{}" c3="{}" c4="{}"/>\n'.format(*self.colors.get(i, (0, 0, 0, 0)))
                for i in range(max(self.colors) + 1)
            )
            out += f"    <ColorInterp>Palette</ColorInterp>\n    <ColorTable>\n{entries}    </ColorTable>\n"
        return out


def _raw_vrt(
    raw_name: str,
    dtype: np.dtype,
    nodata: float,
    width: int,
    height: int,
    crs,
    transform,
    scale: float | None = None,
    look: _BandLook | None = None,
    overviews: Sequence[str] = (),
) -> str:
    """A VRT describing a raw single-band row-major little-endian file beside it (``scale``: the band's
    unscaling factor; ``look``: description, tags, colour table; all carried into the COG;
    ``overviews``: VRTs beside it holding the band's overview levels, finest first, which the COG
    copy takes instead of building its own)."""
    look = look or _BandLook()
    levels = "".join(
        f'    <Overview>\n      <SourceFilename relativeToVRT="1">{xml_escape(name)}</SourceFilename>\n'
        f"      <SourceBand>1</SourceBand>\n    </Overview>\n"
        for name in overviews
    )
    unscale = f"    <Offset>0</Offset>\n    <Scale>{scale!r}</Scale>\n" if scale is not None else ""
    geo = ""
    if crs is not None:
        geo += f"  <SRS>{xml_escape(crs.to_wkt())}</SRS>\n"
    if transform is not None:
        gt = ", ".join(repr(float(v)) for v in transform.to_gdal())
        geo += f"  <GeoTransform>{gt}</GeoTransform>\n"
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">\n{geo}{look.dataset_xml()}'
        f'  <VRTRasterBand dataType="{_GDAL_TYPES[dtype.name]}" band="1" subClass="VRTRawRasterBand">\n'
        f"{look.band_xml()}"
        f"    <NoDataValue>{nodata!r}</NoDataValue>\n{unscale}"
        f'    <SourceFilename relativeToVRT="1">{xml_escape(raw_name)}</SourceFilename>\n'
        f"    <ImageOffset>0</ImageOffset>\n"
        f"    <PixelOffset>{dtype.itemsize}</PixelOffset>\n"
        f"    <LineOffset>{dtype.itemsize * width}</LineOffset>\n"
        f"    <ByteOrder>LSB</ByteOrder>\n{levels}"
        f"  </VRTRasterBand>\n</VRTDataset>\n"
    )


class OutputSet:
    """The outputs of one scene, written under a temporary name inside out_dir and renamed on commit."""

    def __init__(
        self,
        out_dir: Path,
        *,
        width: int,
        height: int,
        crs,
        transform,
        georeferenced: bool,
        pixel_area_m2: float | None,
        options: OutputOptions,
        protect: Sequence[str | Path] = (),
        item: ItemBuilder | None = None,
        resume_key: str | None = None,
    ) -> None:
        """``protect``: files (the run's inputs) a commit must never replace: a set that would is
        refused here, before anything is written. ``item(outputs, report) -> dict``: the STAC Item
        written as item.json at commit (:func:`edge_ls.io.stac.scene_item`). ``resume_key``: the
        scene's full key; given, :meth:`checkpoint` records durable rows under it and a killed run's
        temporary folder with the same key is reopened (:attr:`resumed_rows`), see
        :mod:`edge_ls.io.progress`."""
        if width <= 0 or height <= 0:
            raise ValueError(f"raster size must be positive, got {width}x{height}")
        if not 0.0 < options.threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {options.threshold}")
        self.out_dir = Path(out_dir)
        self.width, self.height = width, height
        self.options = options
        self.georeferenced = bool(georeferenced)
        self.crs = CRS.from_user_input(crs) if (crs is not None and georeferenced) else None
        self.transform = Affine(*tuple(transform)[:6]) if (transform is not None and georeferenced) else None
        # Areas are in m2 only when the caller knows the pixel area; otherwise in pixels.
        self.area_in_m2 = bool(georeferenced and pixel_area_m2)
        self.pixel_area = float(pixel_area_m2) if self.area_in_m2 else 1.0
        self._next_row = 0
        self._valid_pixels = 0
        self._detected_pixels = 0
        self._done = False  # committed or aborted
        self._finalized = False  # COGs, GeoJSON and quicklook done; report not yet written
        self._sinks: dict[str, _RawSink] = {}
        self._detections: DetectionWriter | None = None
        self._tmp: Path | None = None
        self._item = item
        self._resume_key = resume_key
        self._resume_sink: _RawSink | None = None
        #: Rows ``[0, resumed_rows)`` came from a killed run's durable rows (0: a fresh set).
        self.resumed_rows = 0
        self._check_targets([Path(p) for p in protect])
        resumed: progress.Progress | None = None
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            claimed = self._claim_partial() if resume_key is not None else None
            remove_stale_partials(self.out_dir)
            if claimed is not None:
                self._tmp, resumed = claimed
            else:
                suffix = f".partial-{os.getpid()}"
                self._tmp = Path(tempfile.mkdtemp(prefix=".edge_ls.", suffix=suffix, dir=self.out_dir))
            keep = resumed is not None
            geo = {"crs": self.crs, "transform": self.transform, "width": width, "height": height}
            layer = {
                "dtype": options.layer_dtype,
                "nodata": options.layer_nodata,
                "scale": PERCENT_SCALE if options.layers == "percent" else None,
            }
            tags = dict(options.tags)
            looks = {
                PROBABILITY: _BandLook(BAND_DESCRIPTIONS[PROBABILITY], tags),
                MASK: _BandLook(BAND_DESCRIPTIONS[MASK], tags, MASK_COLORS),
                CONFIDENCE: _BandLook(BAND_DESCRIPTIONS[CONFIDENCE], tags),
            }
            if options.uncertainty:
                looks[UNCERTAINTY] = _BandLook(BAND_DESCRIPTIONS[UNCERTAINTY], tags)
            for name, look in looks.items():
                encoding = {"dtype": "uint8", "nodata": MASK_NODATA} if name == MASK else layer
                self._sinks[name] = _RawSink(
                    self._stream_path(name),
                    **encoding,
                    **geo,
                    keep=keep,
                    look=look,
                    overviews=_OVERVIEWS[name],
                )
            if resume_key is not None:
                # The exact float probability (0 where nodata) the vectorizer and the quicklook were
                # fed: the percent layer alone would not give back the polygons' mean_prob.
                self._resume_sink = _RawSink(
                    self._stream_path(RESUME), dtype="float32", nodata=0.0, **geo, keep=keep
                )
            polygonizer = StreamingPolygonizer(
                width,
                transform=self.transform,
                pixel_area=self.pixel_area,
                min_area=options.min_area_m2,
                simplify_tolerance=options.simplify_tolerance,
            )
            self._detections = DetectionWriter(self._vector_layers(), polygonizer, options.threshold)
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        except BaseException:  # a stop signal mid-construction: no temporary folder left behind
            self.abort()
            raise
        #: Probability and detected share per quicklook cell, accumulated by write_rows.
        self._cells = CellMeans(height, width, *self.quicklook_shape, channels=2)
        #: A resumed set's durable rows, re-fed by the first write_rows (on the writer's thread, so
        #: the stream's first tiles are inferred meanwhile rather than after).
        self._to_refeed = resumed
        if resumed is not None:
            self._next_row = self.resumed_rows = resumed.rows

    # -- resuming a killed run's rows -------------------------------------------------------------

    def _expected_raw(self) -> dict[str, int]:
        """Each raw intermediate of this set and its size in bytes."""
        layer = np.dtype(self.options.layer_dtype).itemsize
        sizes = {PROBABILITY: layer, MASK: 1, CONFIDENCE: layer, RESUME: 4}
        if self.options.uncertainty:
            sizes[UNCERTAINTY] = layer
        pixels = self.width * self.height
        return {self._stream_name(name): size * pixels for name, size in sizes.items()}

    def _claim_partial(self) -> tuple[Path, progress.Progress] | None:
        """A dead run's temporary folder whose progress record has this set's key and size and whose
        raw files are all there, renamed to this process (so no one else claims or removes it) and
        emptied of everything but those files; None when there is none."""
        expected = self._expected_raw()
        for folder in sorted(self.out_dir.glob(".edge_ls.*.partial-*")):
            stem, _, pid_text = folder.name.rpartition("-")
            if folder.is_symlink() or not folder.is_dir() or not pid_text.isdigit():
                continue
            if int(pid_text) == os.getpid() or _pid_alive(int(pid_text)):
                continue
            record = progress.read(folder)
            if record is None or record.key != self._resume_key:
                continue
            if (record.width, record.height) != (self.width, self.height):
                continue
            try:
                if any((folder / n).stat().st_size != size for n, size in expected.items()):
                    continue
                mine = folder.with_name(f"{stem}-{os.getpid()}")
                os.rename(folder, mine)
            except OSError:
                continue  # gone meanwhile (another run claimed or removed it)
            for entry in mine.iterdir():
                if entry.name not in expected and entry.name != progress.PROGRESS:
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry, ignore_errors=True)
                    else:
                        entry.unlink(missing_ok=True)
            return mine, record
        return None

    def _refeed(self, record: progress.Progress) -> None:
        """Give the vectorizer, the quicklook cells, the counts and the overview levels the durable rows
        ``[0, R)``, in the very pieces the killed run's writer cut them in (so every sum adds up in the
        same order)."""
        assert self._resume_sink is not None
        threshold = np.float32(self.options.threshold)
        try:
            for band in range(0, record.rows, record.band_rows):
                end = min(band + record.band_rows, record.rows)
                for r0 in range(band, end, CHUNK_ROWS):
                    h = min(CHUNK_ROWS, end - r0)
                    for name, sink in self._sinks.items():  # overview levels are rebuilt, not kept
                        layer = sink.read(r0, h).reshape(h, self.width)
                        sink.add_overviews(layer)
                        if name == MASK:
                            ok = layer != MASK_NODATA
                    clean = self._resume_sink.read(r0, h).reshape(h, self.width).astype(np.float32)
                    self._accumulate(r0, clean, ok, ok & (clean >= threshold))
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.abort()
            raise

    def checkpoint(self, rows: int, band_rows: int) -> bool:
        """Record that rows ``[0, rows)`` are durable (raw files fsync-ed first), cut in blender bands
        of ``band_rows``; False (nothing recorded) without a resume key or at the last row."""
        if self._resume_key is None or self._done or self._finalized or not 0 < rows < self.height:
            return False
        if rows > self._next_row:
            raise ValueError(f"checkpoint at row {rows}, only {self._next_row} written")
        assert self._tmp is not None and self._resume_sink is not None
        try:
            for sink in [*self._sinks.values(), self._resume_sink]:
                sink.sync()
            record = progress.Progress(self._resume_key, rows, self.width, self.height, band_rows)
            progress.write(self._tmp, record)
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        return True

    @property
    def files(self) -> dict[str, str]:
        """Logical name -> file name of this set, in commit order (report.json last)."""
        files = dict(FILES if self.georeferenced else PIXEL_FILES)
        report = files.pop("report")
        if self.options.uncertainty:
            files["uncertainty"] = UNCERTAINTY
        if self._item is not None:
            files["item"] = ITEM
        files["report"] = report
        return files

    def _check_targets(self, protect: list[Path]) -> None:
        """Refuse, before writing anything, a set that would replace a folder or one of the inputs."""
        for name in (*self.files.values(), CURRENT):
            target = self.out_dir / name
            if not os.path.lexists(target):
                continue
            if name == CURRENT and not target.is_symlink():
                raise OutputError(f"cannot write outputs to {self.out_dir}: {name} is not edge-ls' pointer")
            if target.is_dir() and not target.is_symlink():
                raise OutputError(
                    f"cannot write outputs to {self.out_dir}: {name} is a folder there (move it, or "
                    "choose another --out)"
                )
            for path in protect:
                with contextlib.suppress(OSError):
                    if os.path.samefile(target, path):
                        raise OutputError(
                            f"cannot write outputs to {self.out_dir}: {name} there is an input of this "
                            "run and would be replaced (choose another --out)"
                        )

    @property
    def vectors(self) -> dict[str, str]:
        """Each vector file and its coordinates, for the report."""
        if not self.georeferenced:
            return {DETECTIONS_PIXEL: "pixel (column, row), no CRS; area_px in pixels"}
        source = self.crs.to_string() if self.crs is not None else "unknown"
        return {
            DETECTIONS: "EPSG:4326 longitude/latitude (RFC 7946)",
            DETECTIONS_GPKG: f"{source} (the input's CRS)",
        }

    def _vector_layers(self) -> list[RegionSink]:
        """The layers the vectorizer fills: see the module docstring."""
        assert self._tmp is not None
        if not self.georeferenced:
            note = "edge-ls detections in pixel space: the input has no georeference; area_px in pixels"
            return [GeoPackageRegions(self._tmp / DETECTIONS_PIXEL, None, "area_px", note)]
        area = "area_m2" if self.area_in_m2 else "area_px"
        layers: list[RegionSink] = []
        try:
            header = {"type": "FeatureCollection", "name": "detections"}
            layers.append(GeoJSONStream(self._tmp / DETECTIONS, header, wgs84_projector(self.crs), area))
            note = "edge-ls detections in the input's CRS"
            layers.append(GeoPackageRegions(self._tmp / DETECTIONS_GPKG, self.crs, area, note))
        except BaseException:
            for layer in layers:
                layer.discard()
            raise
        return layers

    # -- context manager: never leave a partial set behind ----------------------------------------

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self._done:
            self.abort()

    # -- streaming -------------------------------------------------------------------------------

    @property
    def rows_written(self) -> int:
        return self._next_row

    @property
    def quicklook_shape(self) -> tuple[int, int]:
        """(rows, cols) of quicklook.png: a ``background`` passed to finalize must have this size."""
        return quicklook_shape(self.height, self.width, self.options.quicklook_max_size)

    @property
    def stats(self) -> dict:
        """Pixel and region counts so far: pixels are final once the last row is written, detections
        once :meth:`finalize` has returned (the vectorizer thread may still be working before)."""
        detections = self._detections.count if self._detections is not None else 0
        return {
            "valid_pixels": self._valid_pixels,
            "detected_pixels": self._detected_pixels,
            "detected_area_m2": self._detected_pixels * self.pixel_area,
            "detections": detections,
            "area_unit": "m2" if self.area_in_m2 else "pixel",
        }

    def write_rows(
        self,
        row_off: int,
        prob: np.ndarray,
        valid: np.ndarray | None = None,
        uncertainty: np.ndarray | None = None,
    ) -> None:
        """Write one finished band of rows to every output (``uncertainty``: the same rows of
        uncertainty.tif, required when the set writes it).

        ``valid=None``: every finite probability is valid (the pipeline's bands carry nodata as NaN).

        Everything works in chunks of ``CHUNK_ROWS`` rows, which keeps the temporaries small: a
        full-width band of a 20k-px scene would otherwise cost hundreds of MB of scratch arrays.
        Measured trade-off (bench/rss_probe.py, edge-nano, 10k² / 20k²): whole-band polygonizing ~35% faster
        in the vectorizer (fewer seams to union) but peaked at 608 / 805 MiB vs 549 / 631 MiB chunked. Since
        regions are polygonized once (no union), 512-row bands save ~18% of the vectorizer (16.8 vs 20.5 CPU-s
        on a 10k² edge-nano mask) for +35 MiB of its own peak (200 vs 165 MiB).
        """
        if self._done:
            raise ValueError("write_rows after commit or abort")
        if self._to_refeed is not None:
            record, self._to_refeed = self._to_refeed, None
            self._refeed(record)
        if row_off != self._next_row:
            raise ValueError(f"row bands must be contiguous: expected row {self._next_row}, got {row_off}")
        if prob.ndim != 2 or prob.shape[1] != self.width or prob.shape[0] == 0:
            raise ValueError(f"prob band must be [h>0, {self.width}], got {prob.shape}")
        if valid is not None and valid.shape != prob.shape:
            raise ValueError(f"valid {valid.shape} and prob {prob.shape} bands differ in shape")
        if (uncertainty is None) == (UNCERTAINTY in self._sinks):
            raise ValueError("uncertainty rows must be given exactly when the set writes uncertainty.tif")
        if uncertainty is not None and uncertainty.shape != prob.shape:
            raise ValueError(f"uncertainty {uncertainty.shape} and prob {prob.shape} bands differ in shape")
        h = prob.shape[0]
        if row_off + h > self.height:
            raise ValueError(f"band rows {row_off}..{row_off + h} exceed the raster height {self.height}")

        threshold = np.float32(self.options.threshold)
        assert self._detections is not None
        try:
            for start in range(0, h, CHUNK_ROWS):
                rows = slice(start, start + CHUNK_ROWS)
                p = prob[rows].astype(np.float32, copy=False)
                ok = np.isfinite(p)
                if valid is not None:
                    ok &= valid[rows].astype(bool, copy=False)
                clean = np.where(ok, p, np.float32(0.0))
                detected = ok & (clean >= threshold)
                conf = confidence(clean, self.options.threshold)
                r0 = row_off + start
                self._sinks[PROBABILITY].write(r0, self._encode(clean, ok))
                self._sinks[MASK].write(r0, np.where(ok, detected.astype(np.uint8), np.uint8(MASK_NODATA)))
                self._sinks[CONFIDENCE].write(r0, self._encode(conf, ok))
                if uncertainty is not None:
                    u = uncertainty[rows].astype(np.float32, copy=False)
                    u_ok = ok & np.isfinite(u)
                    self._sinks[UNCERTAINTY].write(r0, self._encode(np.where(u_ok, u, np.float32(0)), u_ok))
                if self._resume_sink is not None:
                    self._resume_sink.write(r0, clean)
                self._accumulate(r0, clean, ok, detected)
            if row_off + h == self.height:
                self._detections.end()
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        self._next_row += h

    def _accumulate(self, r0: int, clean: np.ndarray, ok: np.ndarray, detected: np.ndarray) -> None:
        """What later stages take from written rows: the vectorizer (on its own thread; 0 where
        nodata), the quicklook cells and the counts (also re-fed by a resumed set)."""
        assert self._detections is not None
        self._detections.add(r0, clean)
        self._cells.add(r0, 0, np.stack([clean, detected.astype(np.float32)]), ok)
        self._valid_pixels += int(ok.sum())
        self._detected_pixels += int(detected.sum())

    def _encode(self, values: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """[0, 1] floats -> the stored layer (uint8 percent, rounded half up, or float32); nodata off ok."""
        if self.options.layers == "percent":
            percent = (values * np.float32(100.0) + np.float32(0.5)).astype(np.uint8)
            return np.where(ok, percent, np.uint8(PERCENT_NODATA))
        return np.where(ok, values, np.float32(FLOAT_NODATA))

    # -- finishing -------------------------------------------------------------------------------

    def finalize(self, background: Background | None = None) -> None:
        """Turn the streamed rasters into COGs, close the GeoJSON, draw the quicklook.

        Separate from :meth:`commit` so the caller can time this work into the report it then commits.
        ``background(h, w)`` may return an RGB uint8 image of that size to draw the quicklook on.
        """
        if self._done or self._finalized:
            raise ValueError("finalize after finalize, commit or abort")
        if self._next_row != self.height:
            self.abort()
            raise ValueError(f"finalize before every row was written ({self._next_row} of {self.height})")
        assert self._tmp is not None and self._detections is not None
        try:
            for sink in self._sinks.values():
                sink.close()
            if self._resume_sink is not None:  # no resuming from here on: the raw files go one by one
                (self._tmp / progress.PROGRESS).unlink(missing_ok=True)
                self._resume_sink.close()
                self._resume_sink.path.unlink()
                self._resume_sink.vrt.unlink()
            # The vectorizer first: its last regions (often the largest, closing at the last row) are its
            # memory peak, which must not add to a COG copy's.
            self._detections.close()
            # The quicklook is drawn beside the COG copies, on a thread that only computes its PNG bytes:
            # it writes nothing, so a stop signal meanwhile cannot leave a file in the folder abort()
            # removes; the bytes are written here once the copies are done.
            drawing = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="quicklook")
            quicklook = drawing.submit(self._quicklook_png, background)
            drawing.shutdown(wait=False)
            (self._tmp / PROBABILITY_STYLE).write_text(
                probability_qml(self.options.threshold), encoding="utf-8"
            )
            # One copy after another, each with GDAL's compression threads: the overview levels were
            # streamed with the rows, so a copy only compresses. (Two copies side by side, while GDAL
            # still built the overviews, lifted a 20k² finalize above its stream, 651 vs 624 MiB; and
            # copies on Python threads raced a stop signal: bench/README.md.)
            for name, sink in self._sinks.items():  # closed above, their overview levels with them
                self._to_cog(sink.vrt, self._tmp / name)
                sink.unlink()
            (self._tmp / QUICKLOOK).write_bytes(quicklook.result())
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._finalized = True

    def commit(self, report: dict, background: Background | None = None) -> dict[str, Path]:
        """Finish every file (finalize, if not done yet), write report.json, move everything into
        out_dir (report.json last), return {name: final path}."""
        if self._done:
            raise ValueError("commit after commit or abort")
        if not self._finalized:
            self.finalize(background)
        assert self._tmp is not None
        try:
            full_report = {
                **report,
                "outputs": list(self.files.values()),
                "output_stats": self.stats,
                "vectors": self.vectors,
            }
            if self._item is not None:
                item = self._item(self, json.loads(json.dumps(full_report, default=_json_default)))
                _write_json(self._tmp / ITEM, item)
            _write_json(self._tmp / REPORT, full_report)
            final = self._move_into_place()
        except _WRITE_ERRORS as exc:
            raise self._failed(exc) from exc
        except BaseException:
            self.abort()
            raise
        self._done = True
        return final

    def abort(self) -> None:
        """Remove the temporary folder; outputs already in out_dir stay as they were."""
        self._done = True
        for sink in self._sinks.values():
            sink.discard()
        if self._resume_sink is not None:
            self._resume_sink.discard()
        if self._detections is not None:
            self._detections.discard()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # -- internals -------------------------------------------------------------------------------

    def _failed(self, exc: BaseException) -> OutputError:
        """Say why (while the partial files still fill the disk), then remove them."""
        folder = self._tmp if self._tmp is not None and self._tmp.exists() else self.out_dir
        # An uncompressed float32 raster plus its overviews: what a COG of it could need at most.
        room_needed = self.width * self.height * 4 * 4 // 3
        reason = _reason(exc, folder, room_needed)
        self.abort()
        return OutputError(f"cannot write outputs to {self.out_dir}: {reason}")

    def _stream_path(self, name: str) -> Path:
        assert self._tmp is not None
        return self._tmp / self._stream_name(name)

    @staticmethod
    def _stream_name(name: str) -> str:
        return str(Path(f"stream.{name}").with_suffix(".raw"))

    @staticmethod
    def _to_cog(src: Path, dst: Path) -> None:
        """Copy a streamed raster to a COG, taking the overview levels its VRT names (streamed with the
        rows, :mod:`edge_ls.io.overviews`): GDAL only compresses, the reduction is done."""
        with rasterio.open(src) as ds:
            # Horizontal/floating-point predictor for the smooth probability and confidence layers
            # (what bench/cog_codecs.py times); none for the 0/1 mask.
            predictor = "NO" if dst.name == MASK else "YES"
            rasterio.shutil.copy(
                ds,
                dst,
                driver="COG",
                BLOCKSIZE=BLOCK_SIZE,
                # ZSTD level 1: about the size of DEFLATE on these rasters, 3-4x less CPU to write
                # (bench/cog_codecs.py); readable by GDAL >= 2.3 / QGIS 3. Two compression threads
                # (GDAL's own, joined inside the call): with the overviews already streamed the copy is
                # only compression, and a 4096² probability copy went 0.088 -> 0.059 s on 2 cores
                # (bench/tail_parts.py); while GDAL still built the overviews, threads made it slower.
                COMPRESS="ZSTD",
                LEVEL=1,
                NUM_THREADS=COG_THREADS,
                PREDICTOR=predictor,
                OVERVIEWS="FORCE_USE_EXISTING",  # the streamed levels; GDAL resamples nothing
                BIGTIFF="IF_SAFER",
            )

    def _quicklook_png(self, background: Background | None) -> bytes:
        """Render the streamed cell means (no reads): probability on a ramp, detections outlined."""
        prob, share = self._cells.means()
        bg = background(*prob.shape) if background is not None else None
        rgb = render_rgb(prob, share, bg)
        # Ground metres per quicklook pixel: square pixels assumed (the pixel area's square root).
        metres = math.sqrt(self.pixel_area) * self.width / rgb.shape[1] if self.area_in_m2 else None
        note = Annotation(self.options.title, self.options.threshold, metres)
        return encode_png(annotate(rgb, note))

    def _move_into_place(self) -> dict[str, Path]:
        """Switch the whole set at once: version folder, links, one pointer rename (module docstring)."""
        assert self._tmp is not None
        files = self.files
        final = {name: self.out_dir / file for name, file in files.items()}
        if not _symlinks_work(self.out_dir):
            return self._move_files_into_place(final)
        version = self.out_dir / self._tmp.name.replace(".partial-", ".v-")
        os.rename(self._tmp, version)
        self._tmp = version  # an abort before the switch removes it
        progress.fsync_dir(self.out_dir)
        old = _current_version(self.out_dir)
        flat = [f for f in files.values() if _is_plain_file(self.out_dir / f)]
        if flat:  # an older edge-ls' plain files: report.json goes first, comes back last
            with contextlib.suppress(FileNotFoundError):
                (self.out_dir / REPORT).unlink()
        for file in files.values():
            if file != REPORT or flat:
                _link(self.out_dir / file, f"{CURRENT}/{file}")
        _link(self.out_dir / CURRENT, version.name)  # the switch
        self._tmp = None  # committed: nothing to abort any more
        if flat or not _points_to(self.out_dir / REPORT, f"{CURRENT}/{REPORT}"):
            _link(self.out_dir / REPORT, f"{CURRENT}/{REPORT}")
        progress.fsync_dir(self.out_dir)
        # Names of the old set this one lacks (uncertainty.tif, the pixel-space vectors) would dangle.
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.out_dir):
                link = Path(entry.path)
                target = os.readlink(link) if entry.is_symlink() else ""
                if target.startswith(f"{CURRENT}/") and entry.name not in files.values():
                    link.unlink()
        if old is not None and old != version:
            shutil.rmtree(old, ignore_errors=True)
        remove_stale_partials(self.out_dir)
        return final

    def _move_files_into_place(self, final: dict[str, Path]) -> dict[str, Path]:
        """Where symbolic links cannot be made (Windows without the privilege, some network shares):
        plain files, renamed one by one, report.json removed first and back last (its presence
        means the set is complete, but a kill mid-way leaves a mix without it)."""
        assert self._tmp is not None
        with contextlib.suppress(FileNotFoundError):
            final["report"].unlink()
        for name, file in self.files.items():
            os.replace(self._tmp / file, final[name])
        progress.fsync_dir(self.out_dir)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp = None
        return final


def _symlinks_work(folder: Path) -> bool:
    """Whether relative symbolic links can be made in ``folder`` (tried once per folder and process)."""
    key = str(folder.resolve())
    if key not in _SYMLINKS:
        probe = folder / f".edge_ls.symlink-probe-{os.getpid()}"
        try:
            with contextlib.suppress(FileNotFoundError):
                probe.unlink()
            os.symlink(CURRENT, probe)
            probe.unlink()
            _SYMLINKS[key] = True
        except (OSError, NotImplementedError):
            _SYMLINKS[key] = False
    return _SYMLINKS[key]


_SYMLINKS: dict[str, bool] = {}


def _write_json(path: Path, doc: dict) -> None:
    with path.open("w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _points_to(link: Path, target: str) -> bool:
    try:
        return os.readlink(link) == target
    except OSError:
        return False


def _link(path: Path, target: str) -> None:
    """Make ``path`` a relative symlink to ``target`` in one atomic rename (unless it already is)."""
    if _points_to(path, target):
        return
    tmp = path.with_name(f".{path.name}.link-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _current_version(out_dir: Path) -> Path | None:
    """The version folder ``.current`` points to, if any."""
    try:
        return out_dir / os.readlink(out_dir / CURRENT)
    except OSError:
        return None


def remove_stale_partials(out_dir: Path) -> list[Path]:
    """Remove the temporary folders of runs killed before they could clean up (their pid is gone).

    A run's folder is ``.edge_ls.<random>.partial-<pid>``, a committed one ``.edge_ls.<random>.v-<pid>``;
    a folder whose process still exists is left alone (another run may be writing it), and so is the
    version ``.current`` points to. Returns what was removed.
    """
    removed = []
    current = _current_version(out_dir)
    stale = [*out_dir.glob(".edge_ls.*.partial-*"), *out_dir.glob(".edge_ls.*.v-*")]
    for folder in stale:
        pid_text = folder.name.rsplit("-", 1)[-1]
        if not folder.is_dir() or folder.is_symlink() or not pid_text.isdigit() or folder == current:
            continue
        if int(pid_text) != os.getpid() and _pid_alive(int(pid_text)):
            continue
        if int(pid_text) == os.getpid() and ".partial-" in folder.name:
            continue  # this process' own set in progress
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    for link in out_dir.glob(".*.link-*"):  # a link made but not renamed into place
        pid_text = link.name.rsplit("-", 1)[-1]
        if link.is_symlink() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
            link.unlink(missing_ok=True)
            removed.append(link)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _json_default(value: object) -> object:
    """Let reports hold paths and numpy scalars/arrays."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
