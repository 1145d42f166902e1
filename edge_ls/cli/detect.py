"""``edge-ls detect``: the main job, GeoTIFF in, GIS-ready outputs and a report out."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path

from edge_ls.errors import ConfigError, EdgeLSError


def _bands(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("--bands takes 1-based band indexes, e.g. 3,2,1") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--bands takes 1-based band indexes, e.g. 3,2,1")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detect",
        help="detect landslides in rasters: probability, mask, confidence, polygons, report",
        description=(
            "Stream tiles of each INPUT raster through a model and write, into --out (one subfolder per "
            "scene when several are given, plus summary.json): probability.tif, mask.tif, confidence.tif "
            "(COGs), detections.geojson, quicklook.png, item.json (STAC) and report.json. A scene's outputs "
            "appear only when complete, and are replaced as a whole. Rerunning the same command skips "
            "the scenes already done (see --force)."
        ),
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="raster file(s) (GeoTIFF, COG, PNG, JPEG...), globs expanded by edge-ls ('scenes/*.tif', "
        "quoted; ** recursive), @list.txt (one path a line, # comments), or a STAC Item/ItemCollection "
        ".json of local GeoTIFF assets",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--model",
        default=None,
        help="ONNX file or bundled model name (default, edge-nano, ...; see 'edge-ls models')",
    )
    which.add_argument(
        "--profile",
        default=None,
        help="tier profile name or TOML file, or 'auto' to pick from the hardware (see 'edge-ls profiles')",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument("--bands", type=_bands, help="1-based band indexes in the model's band order, e.g. 1,2,3")
    p.add_argument("--nodata", type=float, help="nodata value the file lacks (e.g. 0)")
    p.add_argument("--tile-size", type=int, help="tile size in px (default: the model's)")
    p.add_argument("--overlap", type=float, help="tile overlap fraction (default: the model's, usually 0.2)")
    p.add_argument("--threshold", type=float, help="decision threshold (default: the model's)")
    p.add_argument("--batch", type=int, default=None, help="tiles per batch (default 1, or the profile's)")
    p.add_argument("--readers", type=int, default=2, help="reader threads (default 2)")
    p.add_argument(
        "--streams",
        type=int,
        default=None,
        help="inference threads calling the model at once (default: one per core, at most 2, on the CPU)",
    )
    p.add_argument("--min-area", type=float, metavar="M2", help="minimum polygon area in m² (default: 9 px)")
    p.add_argument(
        "--simplify",
        type=float,
        metavar="TOL",
        help="polygon simplification tolerance in CRS units (default: half a pixel; 0: none)",
    )
    p.add_argument(
        "--layers",
        choices=("percent", "float32"),
        default="percent",
        help="probability/confidence rasters as uint8 percent 0-100 with scale 0.01 (default: a quarter "
        "of the bytes) or float32 0-1",
    )
    p.add_argument(
        "--no-resample",
        action="store_true",
        help="read the scene as it is even when its GSD is far outside the model's trained range",
    )
    p.add_argument(
        "--stac-asset",
        metavar="KEY",
        help="asset of STAC input items to read (default: the first image/tiff asset)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of tables: one input, its report; several, one document for the run "
        "({scenes, counts, exit_code, summary})",
    )
    out.add_argument(
        "--jsonl", action="store_true", help="print one JSON line per scene as it ends, then a counts line"
    )
    p.add_argument("--force", action="store_true", help="run every scene again, even those already done")
    p.add_argument("--ray", action="store_true", help="run the scenes on a Ray cluster (extra [cluster])")
    p.add_argument(
        "--ray-address", metavar="ADDR", help="Ray cluster to join (implies --ray; default: local)"
    )
    p.add_argument("--actors", type=int, metavar="N", help="Ray actors, one model load each (implies --ray)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Stop signals are turned into a clean stop from the first moment (see :mod:`edge_ls.runs`)."""
    from edge_ls.runs import Stopped, stop_on_signals

    with stop_on_signals():
        try:
            return _run(args)
        except Stopped as stop:
            print(
                f"edge-ls: {stop}: temporary files removed, finished scenes kept; rerun the same command "
                "to resume",
                file=sys.stderr,
            )
            return stop.exit_code


def _run(args: argparse.Namespace) -> int:
    from edge_ls.deployment import deploy
    from edge_ls.journal import Journal
    from edge_ls.runs import keyed
    from edge_ls.scenes import plan_scenes

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    if args.overlap is not None and not 0.0 <= args.overlap < 0.9:
        raise ConfigError("--overlap must be in [0, 0.9)")
    if args.actors is not None and args.actors < 1:
        raise ConfigError("--actors must be at least 1")
    use_ray = args.ray or args.ray_address is not None or args.actors is not None
    scenes = plan_scenes(args.inputs, stac_asset=args.stac_asset)
    progress = len(scenes) == 1 and not args.quiet and sys.stderr.isatty()
    deploy_kwargs = deploy_arguments(args, progress=progress)
    deployment = deploy(**deploy_kwargs)
    for note in deployment.notes:
        print(f"edge-ls: {note}", file=sys.stderr)
    scenes = keyed(scenes, deployment)
    journal = Journal(args.out, keep_finished=not args.force)
    printer = _Printer(args, deployment, several=len(scenes) > 1)
    if use_ray:
        run_ray = _ray_backend()
        results = run_ray(
            scenes,
            deploy_kwargs,
            args.out,
            address=args.ray_address,
            actors=args.actors,
            journal=journal,
            on_result=printer.scene,
            force=args.force,
        )
    else:
        from edge_ls.runs import run_local

        results = run_local(scenes, deployment, args.out, journal=journal, on_result=printer.scene)
    return printer.finish(results)


def deploy_arguments(args: argparse.Namespace, *, progress: bool) -> dict:
    """The keyword arguments of :func:`edge_ls.deployment.deploy` for these options (a Ray actor
    rebuilds the same deployment from them)."""
    return {
        "profile": args.profile,
        "model": None if args.profile is not None else (args.model or "default"),
        "tile_size": args.tile_size,
        "overlap": args.overlap,
        "threshold": args.threshold,
        "batch_size": args.batch,
        "readers": args.readers,
        "streams": args.streams,
        "bands": args.bands,
        "nodata": args.nodata,
        "min_area_m2": args.min_area,
        "simplify_tolerance": args.simplify,
        "layers": args.layers,
        "progress": progress,
        "resample": not args.no_resample,
    }


def _ray_backend():
    """``edge_ls.cluster.run_ray``, or one line saying why it is not there."""
    try:
        from edge_ls.cluster import run_ray
    except ModuleNotFoundError as exc:
        if exc.name == "edge_ls.cluster":
            raise ConfigError(
                "--ray is not available in this build of edge-ls (no edge_ls.cluster)"
            ) from None
        raise
    return run_ray


class _Printer:
    """What the user sees: tables (default), one JSON document (--json) or JSON Lines (--jsonl)."""

    def __init__(self, args: argparse.Namespace, deployment, several: bool) -> None:
        self.args, self.deployment, self.several = args, deployment, several

    def scene(self, result) -> None:
        from edge_ls.report import format_table
        from edge_ls.runs import describe

        report = result.report
        if result.status == "done" and report is not None:
            for note in report.get("backend_skipped", []):
                if note.split(":", 1)[0] in self.deployment.expected_skips:
                    continue
                ran = f"{report['backend']} ({report['device']})"
                print(f"edge-ls: backend {note}; ran on {ran}", file=sys.stderr)
        if result.status == "failed":
            if not self.several:
                return  # raised by finish(), as a single input always did
            print(f"edge-ls: error: {result.scene.path.name}: {result.error}", file=sys.stderr)
        if self.args.jsonl:
            print(json.dumps(describe(result)), flush=True)
        elif not self.args.json and report is not None:
            kept = " (kept from an earlier run)" if result.status == "skipped" else ""
            print(f"{result.scene.path.name} -> {result.out_dir}/{kept}")
            print(format_table(report))

    def finish(self, results: list) -> int:
        from edge_ls.runs import counts, describe, exit_code

        code = exit_code(results)
        summary = write_summary(self.args.out, results) if self.several else None
        if not self.several and results and results[0].status == "failed":
            exc = results[0].extra.get("exception")
            if isinstance(exc, BaseException):
                raise exc
            error = EdgeLSError(results[0].error or "the scene failed")  # from Ray: no exception object
            error.exit_code = results[0].exit_code or 1
            raise error
        if self.args.jsonl:
            print(json.dumps({"counts": counts(results), "exit_code": code, "summary": summary}))
        elif self.args.json and self.several:
            doc = {
                "scenes": [describe(r) for r in results],
                "counts": counts(results),
                "exit_code": code,
                "summary": summary,
            }
            print(json.dumps(doc, indent=2))
        elif self.args.json and results:
            print(json.dumps(results[0].report, indent=2))
        elif self.several:
            c = counts(results)
            print(
                f"{c['done']} done, {c['skipped']} kept from an earlier run, {c['failed']} failed: {summary}"
            )
        return code


def write_summary(out_root: Path, results: list) -> str:
    """summary.json: the STAC ItemCollection of the scenes that have a set (atomic replace)."""
    from edge_ls.io.stac import item_collection

    items = []
    for r in results:
        with contextlib.suppress(OSError, ValueError):
            if r.status in ("done", "skipped"):
                items.append(
                    (r.scene.name, json.loads((r.out_dir / "item.json").read_text(encoding="utf-8")))
                )
    path = Path(out_root) / "summary.json"
    tmp = path.with_name(f".summary.json.{os.getpid()}")
    tmp.write_text(json.dumps(item_collection(items), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return str(path)
