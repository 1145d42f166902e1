"""One detection run: a :class:`~edge_ls.deployment.Deployment` and a raster in, every output and the
report out. The stream itself (read -> tile -> infer -> blend -> write, overlapped on threads) is
:mod:`edge_ls.stream`; the runner comes from :mod:`edge_ls.backends.select`; the report is built once,
as a typed :class:`~edge_ls.report.Report`, after the outputs are final. What is here: input checks and
warnings, the output set, the quicklook's imagery, and glibc allocator tuning for bounded memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio

from edge_ls import __version__
from edge_ls.artifact import ModelSpec
from edge_ls.backends.base import Runner
from edge_ls.backends.select import default_streams, make_runner
from edge_ls.deployment import Deployment, DetectOptions, LoadedModel, deploy
from edge_ls.io import resample
from edge_ls.io.outputs import OutputOptions, OutputSet
from edge_ls.io.quicklook import CellMeans
from edge_ls.io.source import RasterSource
from edge_ls.io.stac import item_builder
from edge_ls.report import Report, build_report
from edge_ls.stream import StreamSetup, run_stream
from edge_ls.tiling import Tile, TilePlan, plan_tiles

log = logging.getLogger(__name__)

#: A resumable scene records its durable rows at most this often (an fsync of each raw file).
CHECKPOINT_S = 2.0
#: GDAL block cache for one run: enough for the writer's partial blocks, small enough to bound RSS.
GDAL_CACHE_MB = 128


def detect(
    input_path: str | Path,
    model: str | Path | LoadedModel | Deployment | None,
    out_dir: str | Path,
    options: DetectOptions | None = None,
    runner_factory: Callable[[LoadedModel, DetectOptions], Runner] | None = None,
    *,
    protect: Sequence[str | Path] = (),
    scene_id: str | None = None,
    resume_key: str | None = None,
) -> Report:
    """Run a deployment (or a model, with ``options``) over one raster and write every output into
    ``out_dir``; return the report. ``options.profile`` set: the profile's settings fill what the
    options leave unset, so a library caller gets the profile's tile and batch too.

    ``protect``: files a commit must never replace (the input itself always is; a multi-scene run
    adds every input); ``scene_id``: the STAC Item's id (default: the input's stem); ``resume_key``:
    the scene's full key (:func:`edge_ls.runs.keyed`): the writer records its durable rows under it
    and a killed run's rows with the same key are kept (:mod:`edge_ls.io.progress`). Not for a
    cascade, whose triage of a tile row depends on the rows before it."""
    deployment = _as_deployment(model, options)
    options = deployment.options
    loaded = deployment.model
    spec = loaded.spec
    _pin_malloc_mmap_threshold()
    t0 = time.perf_counter()
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024),
        RasterSource(input_path, spec, bands=options.bands, nodata=options.nodata) as source,
    ):
        tile_size = options.tile_size or spec.tile_size
        overlap = spec.overlap if options.overlap is None else options.overlap
        threshold = deployment.threshold
        target_gsd = resample.read_gsd(source.gsd_m, spec, options.resample)
        scale = 1.0
        if target_gsd is not None:
            assert source.gsd_m is not None  # read_gsd returns None without it
            scene_tile = resample.scene_tile_size(tile_size, source.gsd_m, target_gsd)
            scale = scene_tile / tile_size
            tile_size = scene_tile
        plan = plan_tiles(source.width, source.height, tile_size, overlap)
        warnings = input_warnings(source, spec, tile_size, target_gsd)
        for warning in warnings:
            log.warning("%s", warning)
        tags = _describe(source, spec, threshold, loaded.name)
        if deployment.is_cascade:
            tags["EDGE_LS_TRIAGE"] = deployment.models["triage"].label
        outputs = OutputSet(
            Path(out_dir),
            width=source.width,
            height=source.height,
            crs=source.crs,
            transform=source.transform,
            georeferenced=source.georeferenced,
            pixel_area_m2=source.pixel_area_m2,
            options=_output_options(source, options, threshold, tags),
            protect=(Path(input_path), *protect),
            item=item_builder(loaded.path, scene_id or Path(input_path).stem),
            resume_key=None if deployment.is_cascade else resume_key,
        )
        # Entered at once: a stop signal from here on removes the temporary folder on its way out.
        with outputs:
            imagery = _ImageryCells(source, spec, outputs.quicklook_shape, scale)
            factory = runner_factory or (lambda _loaded, _options: make_runner(deployment))
            runner = factory(loaded, options)
            setup = StreamSetup(
                plan=plan,
                spec=spec,
                batch_size=options.batch_size,
                readers=options.readers,
                queue_depth=options.queue_depth,
                scale=scale,
                gsd_m=target_gsd if target_gsd is not None else source.gsd_m,
                extra_layers=("uncertainty",) if options.uncertainty_tta else (),
                on_read=imagery.add,
                progress=options.progress,
                start_row=outputs.resumed_rows,
                checkpoint_s=CHECKPOINT_S if resume_key is not None else None,
            )
            if outputs.resumed_rows:
                log.info("%s: resuming at row %d", Path(input_path).name, outputs.resumed_rows)
            with runner:
                stats = run_stream(source, runner, outputs, setup)
                flagged = flagged_warning(outputs.stats)
                if flagged:
                    log.warning("%s", flagged)
                    warnings.append(flagged)
                _release_freed_heap()
                with stats.stage("finalize"):
                    outputs.finalize(background=imagery.render)
                stats.wall_s = time.perf_counter() - t0  # everything but writing report.json itself
                report = build_report(
                    stats=stats,
                    plan=plan,
                    source=source,
                    spec=spec,
                    model_path=loaded.path,
                    model_name=loaded.name,
                    runner=runner,
                    threshold=threshold,
                    profile=deployment.profile.name if deployment.profile is not None else None,
                    overlap_requested=overlap,
                    read_gsd_m=target_gsd,
                    warnings=warnings,
                    min_area_m2=outputs.options.min_area_m2,
                    simplify_tolerance=outputs.options.simplify_tolerance,
                    outputs=list(outputs.files.values()),
                )
                committed = report.as_dict()
                if outputs.resumed_rows:
                    committed["resumed_from_row"] = outputs.resumed_rows
                outputs.commit(committed)
    return report


def _as_deployment(
    model: str | Path | LoadedModel | Deployment | None, options: DetectOptions | None
) -> Deployment:
    """The deployment a :func:`detect` call describes (see its docstring)."""
    if isinstance(model, Deployment):
        return model if options is None else replace(model, options=options)
    options = options or DetectOptions()
    if options.profile is None:
        return deploy(model=model or "default", options=options)
    unset = DetectOptions()
    given = {
        name: getattr(options, name)
        for name in ("tile_size", "overlap", "threshold", "batch_size", "uncertainty_tta", "views", "scales")
        if getattr(options, name) != getattr(unset, name)
    }
    return deploy(options.profile, model=model, options=options, **given)


MIN_AREA_PIXELS = 9


class _ImageryCells:
    """The input imagery at quicklook size, averaged from the tiles as the readers read them (no second
    pass over the input), in the model's RGB bands (or its first band as grey)."""

    def __init__(
        self, source: RasterSource, spec: ModelSpec, shape: tuple[int, int], scale: float = 1.0
    ) -> None:
        names = list(spec.bands)
        rgb = {"red", "green", "blue"} <= set(names)
        self.picks = [names.index(b) for b in ("red", "green", "blue")] if rgb else [0, 0, 0]
        # Tiles read at another GSD arrive ``scale`` times smaller: the same cell grid over the
        # resampled extent (cells are proportional, so they cover the same ground).
        self.scale = scale
        h, w = resample.model_shape(source.height, source.width, scale)
        self.cells = CellMeans(h, w, *shape, channels=3)
        self._mean = np.asarray(spec.mean, np.float32)[self.picks].reshape(3, 1, 1)
        self._std = np.asarray(spec.std, np.float32)[self.picks].reshape(3, 1, 1)

    def add(self, plan: TilePlan, tile: Tile, x: np.ndarray, valid: np.ndarray) -> None:
        """Add a tile's core (the part no later tile reads) of model-ready bands ``x`` [C, h, w]."""
        rows, cols = plan.core(tile)
        if self.scale != 1.0:
            (rows, cols), (y0, x0) = resample.model_shape(rows, cols, self.scale), (tile.y0, tile.x0)
            y0, x0 = round(y0 / self.scale), round(x0 / self.scale)
            self.cells.add(y0, x0, x[self.picks, :rows, :cols], valid[:rows, :cols])
            return
        self.cells.add(tile.y0, tile.x0, x[self.picks, :rows, :cols], valid[:rows, :cols])

    def render(self, h: int, w: int) -> np.ndarray:
        """RGB uint8 [h, w, 3]: the means un-standardized back to [0, 1] (black where nothing valid)."""
        unit = self.cells.means()
        if unit.shape[1:] != (h, w):
            raise ValueError(f"imagery cells are {unit.shape[1:]}, the quicklook wants {(h, w)}")
        # In place: no temporaries beside the means.
        unit *= self._std
        unit += self._mean
        np.nan_to_num(unit, copy=False, nan=0.0)
        np.clip(unit, 0.0, 1.0, out=unit)
        unit *= np.float32(255.0)
        unit += np.float32(0.5)
        return np.moveaxis(unit, 0, -1).astype(np.uint8)


#: A scene whose GSD differs from the model's by more than this factor gets a warning (no training range
#: in the metadata); with a trained range ``gsd_range_m``, a factor this/2 beyond either end of it.
GSD_WARN_FACTOR = 4.0
#: Below this input contrast (:func:`edge_ls.io.scaling.input_spread`) the scene counts as near-constant.
NEAR_CONSTANT_SPREAD = 0.01
#: Above this share of the valid area flagged, a detection map is more likely wrong than a disaster.
FLAGGED_SHARE_WARN = 0.5


def gsd_warning(scene_gsd_m: float | None, spec: ModelSpec) -> str | None:
    """One line when the scene's GSD is far outside what the model was trained on; None when fine.

    Judged on the trained range ``spec.gsd_range_m`` when the model has one, else on its nominal
    ``gsd_m``; "far" is a factor 2 beyond the range, or 4 either way of the nominal GSD. The pipeline
    asks only when the scene is read as it is: a scene read at a trained GSD (:mod:`edge_ls.io.resample`)
    gets that line instead, so with a trained range this fires only under ``--no-resample``.
    """
    if not scene_gsd_m:
        return None
    if spec.gsd_range_m is not None:
        lo_m, hi_m = spec.gsd_range_m
        lo, hi = lo_m / (GSD_WARN_FACTOR / 2), hi_m * (GSD_WARN_FACTOR / 2)
        what = f"{lo_m:g}-{hi_m:g} m"
        fix = "without --no-resample it is read at the nearest trained GSD"
    else:
        lo, hi = spec.gsd_m / GSD_WARN_FACTOR, spec.gsd_m * GSD_WARN_FACTOR
        what = f"~{spec.gsd_m:g} m"
        fix = f"resample the scene to ~{spec.gsd_m:g} m, or use a model trained at this GSD"
    if lo <= scene_gsd_m <= hi:
        return None
    return (
        f"scene GSD {scene_gsd_m:.3g} m is far from the {what} model '{spec.name}' was trained on: its "
        f"detections are unreliable here ({fix})"
    )


def input_warnings(
    source: RasterSource, spec: ModelSpec, tile_size: int, read_gsd_m: float | None = None
) -> list[str]:
    """What is wrong with the input for this model, or was done about it, before anything runs: each
    one line. ``read_gsd_m``: the trained GSD the scene is read at, None when read as it is."""
    name = source.path.name
    out = []
    if not source.georeferenced:
        out.append(f"{name} has no georeference: running in pixel space (vectors in pixels, areas in pixels)")
    if read_gsd_m is not None and source.gsd_m:
        out.append(f"{name}: {resample.describe(source.gsd_m, read_gsd_m, spec)}")
    else:
        gsd = gsd_warning(source.gsd_m, spec)
        if gsd:
            out.append(gsd)
    if source.input_spread < NEAR_CONSTANT_SPREAD:
        out.append(
            f"{name} is constant or nearly so (contrast {source.input_spread:.3g} of the model's input "
            "range): there is nothing to detect and any detection is noise"
        )
    if source.width < tile_size or source.height < tile_size:
        out.append(
            f"{name} is {source.width}x{source.height} px, smaller than one {tile_size}-px tile: padded by "
            "reflection, so the model sees mostly repeated content"
        )
    return out


def flagged_warning(stats: dict) -> str | None:
    """One line when more than half of the valid area was flagged as landslide."""
    valid = stats.get("valid_pixels") or 0
    share = stats.get("detected_pixels", 0) / valid if valid else 0.0
    if share <= FLAGGED_SHARE_WARN:
        return None
    return (
        f"{share:.0%} of the valid area is flagged as landslide: more likely imagery the model does not "
        "know (GSD, sensor, season, clouds) than a real event; check the quicklook before using the mask"
    )


def _describe(
    source: RasterSource, spec: ModelSpec, threshold: float, name: str | None = None
) -> dict[str, str]:
    """The GDAL metadata tags of every COG and the quicklook's title: what made these outputs."""
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    return {
        "EDGE_LS_MODEL": name or spec.name,
        "EDGE_LS_TIER": spec.tier,
        "EDGE_LS_PRECISION": spec.precision,
        "EDGE_LS_THRESHOLD": f"{threshold:g}",
        "EDGE_LS_TEMPERATURE": f"{spec.temperature:g}",
        "EDGE_LS_VERSION": __version__,
        "EDGE_LS_INPUT": source.path.name,
        "EDGE_LS_DATE": today,
        "TIFFTAG_SOFTWARE": f"edge-ls {__version__}",
    }


def _output_options(
    source: RasterSource, options: DetectOptions, threshold: float, tags: dict[str, str] | None = None
) -> OutputOptions:
    """Fill the polygon defaults that depend on the raster's pixel size."""
    pixel_area = source.pixel_area_m2 or 1.0  # pixel units when not georeferenced
    pixel_size = abs(source.transform.a) if source.georeferenced else 1.0
    min_area, tolerance = options.min_area_m2, options.simplify_tolerance
    return OutputOptions(
        threshold=threshold,
        min_area_m2=MIN_AREA_PIXELS * pixel_area if min_area is None else min_area,
        simplify_tolerance=0.5 * pixel_size if tolerance is None else tolerance,
        layers=options.layers,
        uncertainty=bool(options.uncertainty_tta),
        tags=tags or {},
        title=_title(tags) if tags else "",
    )


def _title(tags: dict[str, str]) -> str:
    """Quicklook title: scene | model (tier, precision) | date."""
    model = f"{tags['EDGE_LS_MODEL']} ({tags['EDGE_LS_TIER']}, {tags['EDGE_LS_PRECISION']})"
    return f"{tags['EDGE_LS_INPUT']} | {model} | {tags['EDGE_LS_DATE']}"


def _glibc_call(name: str, *args: int) -> None:
    """Call a glibc allocator tuning function; a no-op off Linux or on a C library without it (musl)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            getattr(ctypes.CDLL("libc.so.6"), name)(*args)


def _pin_malloc_mmap_threshold(threshold: int = 1 << 20) -> None:
    """Keep glibc from retaining freed multi-MB tile arrays in per-thread arenas.

    glibc raises its mmap threshold each time a large mmapped block is freed, after which the next
    tile-sized arrays come from the arenas and their memory is kept: bench/rss_probe.py on a 10k² scene,
    peak RSS 825 MiB unpinned vs 591 MiB pinned. Setting the threshold explicitly disables that adjustment.
    """
    _glibc_call("mallopt", _M_MMAP_THRESHOLD, threshold)


_M_MMAP_THRESHOLD = -3


def _release_freed_heap() -> None:
    """Hand the heap the stream's threads freed back to the OS before finalizing.

    glibc keeps freed memory in each thread's arena, where the COG copies (on this thread) cannot reuse
    it, so without this the finalize phase's peak stacked on 100-250 MiB of dead stream memory and moved
    from run to run (bench/memory_profile.py, bench/rss_probe.py).
    """
    _glibc_call("malloc_trim", 0)


__all__ = ["Deployment", "DetectOptions", "LoadedModel", "default_streams", "detect"]
