"""``edge-ls detect``: the main job, GeoTIFF in, GIS-ready outputs and a report out."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_ls.errors import ConfigError, InputError


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
            "input when several are given): probability.tif, mask.tif, confidence.tif (COGs), "
            "detections.geojson, quicklook.png and report.json. Outputs appear only when complete."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="raster file(s): GeoTIFF, COG, PNG, JPEG...")
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
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ls.deployment import deploy
    from edge_ls.pipeline import detect
    from edge_ls.report import format_table

    if args.threshold is not None and not 0.0 < args.threshold < 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    if args.overlap is not None and not 0.0 <= args.overlap < 0.9:
        raise ConfigError("--overlap must be in [0, 0.9)")
    missing = [p for p in args.inputs if not Path(p).exists()]
    if missing:
        raise InputError(f"input not found: {missing[0]}")
    deployment = deploy(
        args.profile,
        model=None if args.profile is not None else (args.model or "default"),
        tile_size=args.tile_size,
        overlap=args.overlap,
        threshold=args.threshold,
        batch_size=args.batch,
        readers=args.readers,
        streams=args.streams,
        bands=args.bands,
        nodata=args.nodata,
        min_area_m2=args.min_area,
        simplify_tolerance=args.simplify,
        layers=args.layers,
        progress=not args.quiet and sys.stderr.isatty(),
        resample=not args.no_resample,
    )
    for note in deployment.notes:
        print(f"edge-ls: {note}", file=sys.stderr)
    several = len(args.inputs) > 1
    for path in args.inputs:
        out_dir = args.out / Path(path).stem if several else args.out
        report = detect(path, deployment, out_dir)
        for note in report["backend_skipped"]:
            if note.split(":", 1)[0] in deployment.expected_skips:
                continue
            ran = f"{report['backend']} ({report['device']})"
            print(f"edge-ls: backend {note}; ran on {ran}", file=sys.stderr)
        if args.json:
            print(json.dumps(report.as_dict(), indent=2))
        else:
            print(f"{Path(path).name} -> {out_dir}/")
            print(format_table(report))
    return 0
