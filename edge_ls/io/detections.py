"""``detections.geojson``: the streaming vectorizer and the FeatureCollection it feeds, on a thread of
their own.

Why a thread: vectorizing is the costliest output on a noisy mask (a 10k² edge-nano scene: ~24 of
the writer's ~30 CPU-s), and it needs nothing but the finished probability rows. Run inside the
writer it serialized with the raster writes, and the COG copies could only start once the last
polygon was out; here it overlaps both, on the other core. Memory: the rows in flight are one queued
chunk (``maxsize=1``) plus the one being labelled; a lagging vectorizer holds the writer back
(backpressure), it never buffers the scene.

Errors (a full disk while writing the GeoJSON, say) are kept and re-raised in the caller's thread
at its next call, so :class:`edge_ls.io.outputs.OutputSet` turns them into one clear ``OutputError``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely

from edge_ls.io.polygons import Region, StreamingPolygonizer
from edge_ls.pixel_math import confidence

#: How long a blocked hand-over waits before checking that the vectorizer is still alive.
_POLL_S = 0.1


class GeoJSONStream:
    """A FeatureCollection written feature by feature, so no region list is held in memory."""

    def __init__(self, path: Path, header: dict) -> None:
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
        geometries = shapely.to_geojson(np.array([r.geometry for r in regions], dtype=object))
        chunks = []
        for region, geometry in zip(regions, geometries, strict=True):
            self._count += 1
            properties = {
                "id": self._count,
                "area_m2": region.area,
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


class _End:
    """Marker: the last row was handed over; close the remaining regions."""


class DetectionWriter:
    """Vectorizes probability rows (0 where nodata) on its own thread into a :class:`GeoJSONStream`.

    Call :meth:`add` with contiguous row chunks, :meth:`end` after the last one, then :meth:`close`
    (waits, re-raises the vectorizer's error, closes the file) or :meth:`discard`.
    """

    def __init__(self, path: Path, header: dict, polygonizer: StreamingPolygonizer, threshold: float) -> None:
        if not 0.0 < threshold < 1.0:  # prob >= threshold must never select a nodata pixel (prob 0)
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self._stream = GeoJSONStream(path, header)
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
        return self._stream.count

    def add(self, row_off: int, prob: np.ndarray) -> None:
        """Hand over finished rows: float32 probabilities, 0 where nodata. Not copied: do not modify."""
        self._put((row_off, prob))

    def end(self) -> None:
        """The last rows were handed over: the vectorizer closes what is still open and stops."""
        self._put(_End())

    def close(self) -> None:
        """Wait for the vectorizer, re-raise its error if it failed, and close the GeoJSON."""
        self._thread.join()
        self._raise_if_failed()
        self._stream.close()

    def discard(self) -> None:
        """Stop the vectorizer (after the chunk it is on) and close the file; the caller deletes it."""
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self._queue.get_nowait()
        self._thread.join()
        self._stream.discard()

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
                    self._stream.write(self._polygonizer.finish())
                    return
                row_off, prob = item
                conf = confidence(prob, self._threshold)
                self._stream.write(self._polygonizer.add_band(row_off, prob >= threshold, prob, conf))
        except BaseException as exc:  # re-raised in the caller's thread
            self._error = exc
