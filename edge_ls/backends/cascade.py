"""The Edge-Cascade runner: a light triage model scores every tile; a tile whose triage probability
reaches the ROI threshold (anywhere, or on at least ``roi_area`` of its pixels), and optionally its eight
grid neighbours, go to the refiner in the same pass over the file; every other tile keeps the triage
output, capped just below the decision threshold.

Why an area rule and the cap: on scenes of low landslide cover a triage model's scattered false
alarms reach the ROI somewhere in nearly every tile, so "anywhere" refined every tile and the cascade
ran slower than its refiner (bench/README.md). Asking for a share of the tile ignores those specks;
the cap makes the triage's verdict final, so a tile it ruled out never holds a detection the refiner
did not confirm (without it, the specks below the area would stay as false alarms).

Neighbours (``neighbours=True``) are refined too because a landslide cut by a tile border may show in
one tile only at its edge, where the triage sees too little of it. With overlapping tiles that part is
also inside the neighbour's own window, and on a scattered low-cover scene every hot tile then costs
nine refinements, so the bundled profile turns it off. A tile can be decided only once the neighbours after it
in raster order (the rest of its row and the row below) are triaged, so the runner holds each
undecided tile back until then: about one row of tiles (the blender accepts tiles that late). Tiles
already known to need the refiner go through at once. Held tiles keep their input as it came (3 MB
per 512-px RGB tile: float16 would halve that, but moved edge-nano's output by up to 0.5 percentage
points, so a refined tile would no longer equal the refiner's own output), and all-nodata neighbours
count as triaged-negative.

A tile kept on the triage output was ruled out by the triage: with the "anywhere" rule its probability
is below the ROI everywhere, and the ROI is at most the decision threshold (checked by
:func:`edge_ls.deployment.deploy`); with an area rule the cap keeps it below the decision threshold.
Either way it never decides a detection the refiner did not see. Outputs are calibrated probabilities
(``returns_probability``): the two models' activations and temperatures differ.

Windows (``roi_window > 0``): the area rule is applied to each ``roi_window``-px window of a tile
instead of the whole tile, and the refiner runs on each window that passes, cut from the tile with
``WINDOW_MARGIN`` px of context on every side (the crop slides inward at the tile's border, so every
crop is square and inside the tile); only the window's own pixels take the refiner's output. A
landslide fills a few windows of a tile, so a perfect triage would pay the refiner for those windows
only (on the bench's low-cover scene its bound rises from 1.98x to 3.07x the refiner at 128 px); with
the bundled triage and the tile's area share the windows were slower and less accurate there
(bench/README.md "Refining windows instead of tiles"), so the bundled profile refines whole tiles.
When a tile's hot windows would cost as much as the tile, the tile is refined whole. Windows and
neighbours do not combine.

The refiner may also average over ``refiner_scales`` (the tile resized, the probability resized back),
using per scene only the scales that keep its pixels inside the refiner's trained GSD range
(:func:`edge_ls.backends.tta.usable_scales`, told the read GSD by :meth:`bind`).

The refiner may average its calibrated probability over the first ``refiner_views`` D4 transforms
(flips and quarter turns, :data:`edge_ls.backends.tta.D4`): eight views of Edge-Lite gained 1.7 F1
points on the test splits (training/README.md), and a cascade pays that eightfold cost only on the
ROI tiles.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner, TileOutput
from edge_ls.backends.tta import D4, mean_probability, usable_scales
from edge_ls.tiling import Tile, TilePlan

#: Context (px) around a refined window: one stride-32 cell of the refiner on every side.
WINDOW_MARGIN = 32


class CascadeRunner(Runner):
    """Triage on every tile, refiner on the ROI tiles and their neighbours (see the module docstring).

    Input batches are standardized as the refiner's spec says; the triage gets them re-standardized
    to its own mean/std (both models read the same bands the same way, checked at deployment).
    """

    returns_probability = True

    def __init__(
        self,
        triage: Runner,
        refiner: Runner,
        *,
        triage_spec: ModelSpec,
        refiner_spec: ModelSpec,
        roi_threshold: float,
        batch_size: int = 1,
        refiner_views: int = 1,
        refiner_scales: Sequence[float] = (1.0,),
        roi_area: float = 0.0,
        neighbours: bool = True,
        decision_threshold: float | None = None,
        roi_window: int = 0,
    ) -> None:
        super().__init__()
        if not 1 <= refiner_views <= len(D4):
            raise ValueError(f"refiner views must be 1..{len(D4)}, got {refiner_views}")
        if not 0.0 <= roi_area < 1.0:
            raise ValueError(f"roi_area must be in [0, 1), got {roi_area}")
        if roi_window < 0 or roi_window % 32:
            raise ValueError(f"roi_window must be 0 or a positive multiple of 32, got {roi_window}")
        if roi_window and neighbours:
            raise ValueError("roi_window refines windows of a tile; it does not combine with neighbours")
        self.roi_area = roi_area
        self.roi_window = roi_window
        self.neighbours = neighbours
        # Largest float32 below the decision threshold: a ruled-out tile's cap (mask = prob >= threshold).
        self._cap = (
            None
            if decision_threshold is None
            else float(np.nextafter(np.float32(decision_threshold), np.float32(0.0)))
        )
        self.refiner_views = refiner_views
        self.refiner_scales = tuple(refiner_scales)
        self.used_scales = self.refiner_scales
        self.triage, self.refiner = triage, refiner
        self.triage_spec, self.refiner_spec = triage_spec, refiner_spec
        self.roi_threshold = roi_threshold
        self.batch_size = max(1, batch_size)
        self.backend = f"cascade({triage.backend} > {refiner.backend})"
        self.concurrency = max(1, min(triage.concurrency, refiner.concurrency))
        self.selection_notes = tuple(dict.fromkeys((*triage.selection_notes, *refiner.selection_notes)))
        r_mean, r_std = _stats(refiner_spec)
        t_mean, t_std = _stats(triage_spec)
        # x_triage = (x_refiner * r_std + r_mean - t_mean) / t_std
        self._gain = (r_std / t_std).astype(np.float32)
        self._bias = ((r_mean - t_mean) / t_std).astype(np.float32)
        self._plan: TilePlan | None = None
        self._lock = threading.Lock()
        self._known: dict[int, bool] = {}  # tile index -> its triage reached the ROI
        self._hot: set[int] = set()  # tiles that go to the refiner
        self._held: dict[int, tuple[Tile, np.ndarray, np.ndarray]] = {}  # index -> tile, input, triage p
        self.tiles_triaged = 0
        self.tiles_refined = 0
        self.windows_refined = 0
        self.pixels_triaged = 0
        self.pixels_refined = 0  # pixels the refiner ran on (windows' crops or whole tiles)
        self.triage_s = 0.0
        self.refine_s = 0.0
        self.peak_held = 0

    # -- runner interface --------------------------------------------------------------------------

    def activate(self) -> None:
        self.triage.__enter__()
        self.refiner.__enter__()

    def deactivate(self) -> None:
        self.triage.__exit__(None, None, None)
        self.refiner.__exit__(None, None, None)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Without tile positions: triage, then the refiner on every tile whose triage reached the ROI."""
        probs = self._triage(batch)
        hit = self._hits(probs)
        if not hit.all():
            probs[~hit] = self._ruled_out(probs[~hit])
        if hit.any():
            probs[hit] = self._refine(batch[hit], probs[hit])
        return probs[:, None]

    def bind(self, plan: TilePlan, gsd_m: float | None = None) -> None:
        """A new scene: its own tile state and counters (a shared runner serves many scenes, and each
        scene's report must count its own tiles)."""
        with self._lock:
            self._plan = plan
            self.used_scales = usable_scales(self.refiner_scales, gsd_m, self.refiner_spec.gsd_range_m)
            self._known.clear()
            self._hot.clear()
            self._held.clear()
            self.tiles_triaged = self.tiles_refined = self.peak_held = 0
            self.windows_refined = self.pixels_triaged = self.pixels_refined = 0
            self.triage_s = self.refine_s = 0.0

    def infer_tiles(self, batch: np.ndarray, tiles: Sequence[Tile]) -> list[TileOutput]:
        probs = self._triage(batch)
        hits = self._hits(probs)
        with self._lock:
            for i, tile in enumerate(tiles):
                self._held[tile.index] = (tile, batch[i], probs[i])
            self.peak_held = max(self.peak_held, len(self._held))
            ready = self._mark([t.index for t in tiles], [bool(h) for h in hits])
        return self._finish(ready)

    def skip_tiles(self, tiles: Sequence[Tile]) -> list[TileOutput]:
        with self._lock:
            ready = self._mark([t.index for t in tiles], [False] * len(tiles))
        return self._finish(ready)

    def flush(self) -> list[TileOutput]:
        with self._lock:
            ready = list(self._held.values())
            self._held.clear()
            hot = {t.index for t, _, _ in ready if t.index in self._hot}
        return self._finish([(item, item[0].index in hot) for item in ready])

    def report(self) -> dict[str, Any]:
        triaged = self.tiles_triaged
        return {
            "cascade": {
                "roi_threshold": self.roi_threshold,
                "roi_area": self.roi_area,
                "neighbours": self.neighbours,
                "refiner_views": self.refiner_views,
                "refiner_scales": list(self.used_scales),
                "tiles_triaged": triaged,
                "tiles_refined": self.tiles_refined,
                "refined_share": round(self.tiles_refined / triaged, 4) if triaged else None,
                "roi_window": self.roi_window,
                "windows_refined": self.windows_refined,
                # The refiner's pixels over the triage's: its share of the work (windows' crops count whole).
                "refined_pixel_share": (
                    round(self.pixels_refined / self.pixels_triaged, 4) if self.pixels_triaged else None
                ),
                "triage_s": round(self.triage_s, 3),
                "refine_s": round(self.refine_s, 3),
                "peak_tiles_held": self.peak_held,
            }
        }

    # -- the cascade -------------------------------------------------------------------------------

    def _triage(self, batch: np.ndarray) -> np.ndarray:
        x = batch * self._gain[None, :, None, None] + self._bias[None, :, None, None]
        t0 = time.perf_counter()
        raw = self.triage.infer(np.ascontiguousarray(x, dtype=np.float32))
        probs = self.triage_spec.probabilities(raw[:, 0])
        with self._lock:
            self.triage_s += time.perf_counter() - t0
            self.tiles_triaged += len(batch)
            self.pixels_triaged += int(np.prod(probs.shape))
        return probs

    def _hits(self, probs: np.ndarray) -> np.ndarray:
        """Per tile: does the triage send it to the refiner (any pixel, or ``roi_area`` of them, at ROI,
        in the whole tile or in one of its windows)? One rule, :func:`hot_windows`'s."""
        args = (self.roi_threshold, self.roi_area)
        return np.array(
            [hot_windows(p, *args, self.roi_window or max(p.shape)).any() for p in probs], dtype=bool
        )

    def _ruled_out(self, probs: np.ndarray) -> np.ndarray:
        """A tile the triage ruled out keeps its probability, capped below the decision threshold."""
        return probs if self._cap is None else np.minimum(probs, np.float32(self._cap))

    def _refine(self, x: np.ndarray, triage: np.ndarray) -> np.ndarray:
        """The hot tiles' probabilities: the refiner's on the whole tile (in batches), or on its hot
        windows with the (capped) triage output elsewhere."""
        t0 = time.perf_counter()
        out = np.empty(triage.shape, np.float32)
        whole, windows, pixels = [], 0, 0
        for i in range(len(x)):
            crops = (
                window_crops(triage[i], self.roi_threshold, self.roi_area, self.roi_window)
                if self.roi_window
                else None
            )
            if crops is None:
                whole.append(i)
                continue
            out[i] = self._ruled_out(triage[i])
            for (ys, xs), (cy, cx, size) in crops:
                p = self._refined(x[i : i + 1, :, cy : cy + size, cx : cx + size])[0]
                out[i, ys, xs] = p[ys.start - cy : ys.stop - cy, xs.start - cx : xs.stop - cx]
                pixels += size * size
            windows += len(crops)
        for k in range(0, len(whole), self.batch_size):
            chunk = whole[k : k + self.batch_size]
            out[chunk] = self._refined(x[chunk])
            pixels += sum(triage[i].size for i in chunk)
        with self._lock:
            self.refine_s += time.perf_counter() - t0
            self.tiles_refined += len(x)
            self.windows_refined += windows
            self.pixels_refined += pixels
        return out

    def _refined(self, x: np.ndarray) -> np.ndarray:
        return mean_probability(self.refiner, self.refiner_spec, x, self.refiner_views, self.used_scales)

    def _neighbours(self, index: int) -> list[int]:
        """The tiles whose decision ``index``'s triage can change: itself and, with neighbours on, its
        eight grid neighbours."""
        assert self._plan is not None
        if not self.neighbours:
            return [index]
        row, col = divmod(index, self._plan.cols)
        return [
            r * self._plan.cols + c
            for r in range(max(0, row - 1), min(self._plan.rows, row + 2))
            for c in range(max(0, col - 1), min(self._plan.cols, col + 2))
        ]

    def _mark(
        self, indexes: list[int], hits: list[bool]
    ) -> list[tuple[tuple[Tile, np.ndarray, np.ndarray], bool]]:
        """Record triage results (under the lock); pop the held tiles whose decision is now final."""
        if self._plan is None:
            raise RuntimeError("CascadeRunner.infer_tiles before bind(plan)")
        touched: set[int] = set()
        for index, hit in zip(indexes, hits, strict=True):
            self._known[index] = hit
            near = self._neighbours(index)
            touched.update(near)
            if hit:
                self._hot.update(near)
        ready = []
        for index in sorted(touched):
            item = self._held.get(index)
            if item is None:
                continue
            hot = index in self._hot
            if hot or all(n in self._known for n in self._neighbours(index)):
                ready.append((self._held.pop(index), hot))
        return ready

    def _finish(self, ready: list[tuple[tuple[Tile, np.ndarray, np.ndarray], bool]]) -> list[TileOutput]:
        """Refine the hot tiles among ``ready`` (outside the lock), keep the triage output of the rest."""
        out: list[TileOutput] = [
            (tile, self._ruled_out(probs), None) for (tile, _, probs), hot in ready if not hot
        ]
        refine = [(tile, x, p) for (tile, x, p), hot in ready if hot]
        if refine:
            probs = self._refine(np.stack([x for _, x, _ in refine]), np.stack([p for _, _, p in refine]))
            out += [(tile, probs[i], None) for i, (tile, _, _) in enumerate(refine)]
        return out


Crop = tuple[tuple[slice, slice], tuple[int, int, int]]


def windows(h: int, w: int, step: int) -> list[tuple[slice, slice]]:
    """The ``step``-px window grid of an h x w tile, raster order (the last row and column may be
    smaller)."""
    return [
        (slice(y, min(y + step, h)), slice(x, min(x + step, w)))
        for y in range(0, h, step)
        for x in range(0, w, step)
    ]


def hot_windows(prob: np.ndarray, roi: float, area: float, step: int) -> np.ndarray:
    """Per window of one tile's triage probability: do ``area`` of its pixels (0: any) reach ``roi``?
    A ``step`` of the tile's side makes the whole tile one window (the whole-tile rule)."""
    reached = prob >= roi
    shares = np.array([reached[win].mean() for win in windows(*prob.shape, step)])
    return shares > 0.0 if area <= 0.0 else shares >= area


def window_crops(prob: np.ndarray, roi: float, area: float, step: int) -> list[Crop] | None:
    """The hot windows of one tile, each with its square crop (top, left, side) holding the window and
    ``WINDOW_MARGIN`` px of context (slid inward at the tile border); None when the crops would cost
    at least the whole tile or do not fit in it (refine the tile whole)."""
    h, w = prob.shape
    size = step + 2 * WINDOW_MARGIN
    hot = [
        win
        for win, is_hot in zip(windows(h, w, step), hot_windows(prob, roi, area, step), strict=True)
        if is_hot
    ]
    if size > min(h, w) or len(hot) * size * size >= h * w:
        return None
    return [
        (
            (ys, xs),
            (
                min(max(ys.start - WINDOW_MARGIN, 0), h - size),
                min(max(xs.start - WINDOW_MARGIN, 0), w - size),
                size,
            ),
        )
        for ys, xs in hot
    ]


def _stats(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
