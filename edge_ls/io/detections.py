"""The detection vectors: the streaming vectorizer and the layers it feeds, on a thread of their own.

Layers (see :class:`edge_ls.io.outputs.OutputSet` for which a run writes):

* :class:`GeoJSONStream`: ``detections.geojson`` per RFC 7946: coordinates in WGS 84 longitude /
  latitude (reprojected from the input's CRS with PROJ, vectorized), rounded to 7 decimals (~1 cm),
  exterior rings counterclockwise and holes clockwise (the right-hand rule), no ``crs`` member.
* :class:`GeoPackageRegions`: ``detections.gpkg``, the same polygons in the input's own CRS (areas
  and distances measured there), or ``detections_pixel.gpkg`` in pixel space (no CRS at all) when the
  input has no georeference.

Why a thread: vectorizing is the costliest output on a noisy mask (a 10k² edge-nano scene: ~24 of
the writer's ~30 CPU-s), and it needs nothing but the finished probability rows. Run inside the
writer it serialized with the raster writes, and the COG copies could only start once the last
polygon was out; here it overlaps both, on the other core. Memory: the rows in flight are one queued
chunk (``maxsize=1``) plus the one being labelled; a lagging vectorizer holds the writer back
(backpressure), it never buffers the scene.

Errors (a full disk while writing a layer, say) are kept and re-raised in the caller's thread
at its next call, so :class:`edge_ls.io.outputs.OutputSet` turns them into one clear ``OutputError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio.warp
import shapely
from rasterio.crs import CRS

from edge_ls.io.gpkg import GeoPackageStream
from edge_ls.io.polygons import Region, StreamingPolygonizer
from edge_ls.pixel_math import confidence

#: How long a blocked hand-over waits before checking that the vectorizer is still alive.
_POLL_S = 0.1
#: Decimals of the GeoJSON's degrees: 1e-7 degree is ~1.1 cm, finer than any pixel edge-ls reads
#: (RFC 7946 section 11.2 recommends no more precision than the data has).
GEOJSON_DECIMALS = 7
#: Per-feature statistics, in this order, in every layer (the area's name depends on its unit).
STAT_FIELDS = ("mean_prob", "max_prob", "mean_confidence")

Project = Callable[[np.ndarray], np.ndarray]


class RegionSink(Protocol):
    """A layer the vectorizer writes regions into."""

    @property
    def count(self) -> int: ...

    def write(self, regions: Sequence[Region]) -> None: ...

    def close(self) -> None: ...

    def discard(self) -> None: ...


def wgs84_projector(crs: CRS | None) -> Project:
    """Geometries in ``crs`` -> the same in WGS 84 lon/lat, rounded and oriented as RFC 7946 asks.

    ``rasterio.warp.transform`` returns (x=lon, y=lat) whatever the CRS's axis order; one PROJ call
    transforms every vertex of a batch of regions at once.
    """
    same = crs is None or crs.to_epsg() == 4326

    def project(geometries: np.ndarray) -> np.ndarray:
        def to_lonlat(xy: np.ndarray) -> np.ndarray:
            if not same and len(xy):
                lon, lat = rasterio.warp.transform(crs, "EPSG:4326", xy[:, 0], xy[:, 1])
                xy = np.column_stack([lon, lat])
            return np.round(xy, GEOJSON_DECIMALS)

        out = shapely.transform(geometries, to_lonlat)
        return shapely.orient_polygons(out, exterior_cw=False)

    return project


class GeoJSONStream:
    """A FeatureCollection written feature by feature, so no region list is held in memory.

    ``project`` maps each batch of geometries before it is written (:func:`wgs84_projector` for the
    RFC 7946 file); ``area_field`` names the area property (``area_m2``, or ``area_px`` in pixels).
    """

    def __init__(
        self, path: Path, header: dict, project: Project | None = None, area_field: str = "area_m2"
    ) -> None:
        self._project = project
        self._area_field = area_field
        self._file = path.open("w", encoding="utf-8")
        head = json.dumps({**header, "features": []})
        self._file.write(head[: -len("]}")] + "\n")  # open the features array
        self._count = 0

    @property
    def count(self) -> int:
        return self._count

    def write(self, regions: Sequence[Region]) -> None:
        if not regions:
            return
        shapes = np.array([r.geometry for r in regions], dtype=object)
        if self._project is not None:
            shapes = self._project(shapes)
        geometries = shapely.to_geojson(shapes)
        chunks = []
        for region, geometry in zip(regions, geometries, strict=True):
            self._count += 1
            properties = {
                "id": self._count,
                self._area_field: region.area,
                "mean_prob": round(region.mean_prob, 6),
                "max_prob": round(region.max_prob, 6),
                "mean_confidence": round(region.mean_confidence, 6),
            }
            sep = ",\n" if self._count > 1 else ""
            chunks.append(
                f'{sep}{{"type": "Feature", "id": {self._count}, "properties": {json.dumps(properties)}, '
                f'"geometry": {geometry}}}'
            )
        self._file.write("".join(chunks))

    def close(self) -> None:
        self._file.write("\n]}\n")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class GeoPackageRegions:
    """Regions into a :class:`edge_ls.io.gpkg.GeoPackageStream` layer (geometries as they come)."""

    def __init__(self, path: Path, crs: CRS | None, area_field: str, description: str) -> None:
        self._area_field = area_field
        self._layer = GeoPackageStream(path, "detections", crs, (area_field, *STAT_FIELDS), description)

    @property
    def count(self) -> int:
        return self._layer.count

    def write(self, regions: Sequence[Region]) -> None:
        self._layer.write(
            [r.geometry for r in regions],
            [(r.area, r.mean_prob, r.max_prob, r.mean_confidence) for r in regions],
        )

    def close(self) -> None:
        self._layer.close()

    def discard(self) -> None:
        self._layer.discard()


class _End:
    """Marker: the last row was handed over; close the remaining regions."""


class DetectionWriter:
    """Vectorizes probability rows (0 where nodata) on its own thread into one or more layers
    (a :class:`GeoJSONStream`, a :class:`GeoPackageRegions`...), each getting every region.

    Call :meth:`add` with contiguous row chunks, :meth:`end` after the last one, then :meth:`close`
    (waits, re-raises the vectorizer's error, closes the file) or :meth:`discard`.
    """

    def __init__(
        self, sinks: Sequence[RegionSink], polygonizer: StreamingPolygonizer, threshold: float
    ) -> None:
        if not 0.0 < threshold < 1.0:  # prob >= threshold must never select a nodata pixel (prob 0)
            for sink in sinks:
                sink.discard()
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        if not sinks:
            raise ValueError("a DetectionWriter needs at least one layer to write")
        self._sinks = tuple(sinks)
        self._polygonizer = polygonizer
        self._threshold = threshold
        self._queue: queue.Queue[tuple[int, np.ndarray] | _End] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vectorizer", daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        """Features written so far (all of them once :meth:`close` returned)."""
        return self._sinks[0].count

    def add(self, row_off: int, prob: np.ndarray) -> None:
        """Hand over finished rows: float32 probabilities, 0 where nodata. Not copied: do not modify."""
        self._put((row_off, prob))

    def end(self) -> None:
        """The last rows were handed over: the vectorizer closes what is still open and stops."""
        self._put(_End())

    def close(self) -> None:
        """Wait for the vectorizer, re-raise its error if it failed, and close every layer."""
        self._thread.join()
        self._raise_if_failed()
        for sink in self._sinks:
            sink.close()

    def discard(self) -> None:
        """Stop the vectorizer (after the chunk it is on) and close the file; the caller deletes it."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        for sink in self._sinks:
            sink.discard()

    def _put(self, item: tuple[int, np.ndarray] | _End) -> None:
        while True:
            self._raise_if_failed()
            if not self._thread.is_alive():
                raise RuntimeError("rows handed to a vectorizer that has stopped")
            try:
                self._queue.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _write(self, regions: Sequence[Region]) -> None:
        for sink in self._sinks:
            sink.write(regions)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        threshold = np.float32(self._threshold)
        try:
            while not self._stop.is_set():
                try:
                    item = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if isinstance(item, _End):
                    self._write(self._polygonizer.finish())
                    return
                row_off, prob = item
                conf = confidence(prob, self._threshold)
                self._write(self._polygonizer.add_band(row_off, prob >= threshold, prob, conf))
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
