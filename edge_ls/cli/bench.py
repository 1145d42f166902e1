"""``edge-ls bench``: every installed tier and the peers on the same labelled scenes (bench/README.md)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

#: Profiles, and ``model:NAME`` for a model alone (Edge-Lite fp32: the cascade's refiner and the peer's).
DEFAULT_TIERS = ("edge-lite", "model:edge-lite", "edge-nano", "edge-cascade-nano", "edge-cascade", "fusion")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark every tier and the peers on labelled scenes: speed, memory, min/km², F1/IoU",
        description=(
            "Run every tier (profile or model name) on the same labelled scenes built from the real "
            "labelled tiles (low/medium/high landslide cover), GeoDeep on the same model and scene, and "
            "the targets as ratios within the run. Writes OUT.json, OUT.md, OUT.csv and OUT.png."
        ),
    )
    p.add_argument("--tiers", default=",".join(DEFAULT_TIERS), help="comma-separated profiles or models")
    p.add_argument("--covers", default="low,medium,high", help="landslide covers every row runs on")
    p.add_argument(
        "--cascade-covers",
        default="low,medium,high",
        help="covers the cascade and its refiner alone also run on (the cascade benefit)",
    )
    p.add_argument("--size", type=int, default=2048, help="scene side in px (default 2048)")
    p.add_argument("--repeats", type=int, default=3, help="runs per row; median and spread reported")
    p.add_argument("--peers", default="geodeep", help="comma-separated peers ('' for none)")
    p.add_argument(
        "--peer-model", default="model:edge-lite", help="the model the peers run (edge-ls runs it too)"
    )
    p.add_argument("--cascade", default="edge-cascade", help="cascade profile measured against its refiner")
    p.add_argument("--large-size", type=int, default=None, help="scene side for the peak-RSS comparison")
    p.add_argument("--gpu-json", type=Path, default=None, help="bench/gpu_tiers.py results to merge")
    p.add_argument("--real-root", type=Path, default=Path("../shared/data/real"), help="labelled data root")
    p.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "edge-ls" / "bench")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/edge-ls-bench"), help="run outputs")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(f"bench/results/bench-{time.strftime('%Y-%m-%d')}"),
        help="results base path (default bench/results/bench-DATE)",
    )
    p.set_defaults(func=run)


def graph_figures(path: Path, tile: int) -> dict[str, Any]:
    """Params and GFLOPs of one ONNX file at ``tile`` px (counted off the graph, as manifests do)."""
    import onnx

    from edge_ls.export.flops import graph_cost

    cost = graph_cost(onnx.load(str(path)), tile)
    return {"params": cost.params, "gflops": round(cost.gflops, 3)}


def run(args: argparse.Namespace) -> int:
    from edge_ls.bench.run import BenchConfig, run_bench, write_results
    from edge_ls.errors import ConfigError

    if args.repeats < 1 or args.size < 512:
        raise ConfigError("--repeats must be at least 1 and --size at least 512")
    config = BenchConfig(
        tiers=[t for t in args.tiers.split(",") if t],
        covers=[c for c in args.covers.split(",") if c],
        size=args.size,
        repeats=args.repeats,
        peers=[p for p in args.peers.split(",") if p],
        peer_model=args.peer_model,
        cascade=args.cascade,
        cascade_covers=[c for c in args.cascade_covers.split(",") if c],
        large_size=args.large_size,
        gpu_json=args.gpu_json,
        real_root=args.real_root,
        cache_dir=args.cache_dir,
        work_dir=args.work_dir,
    )
    results = run_bench(config, graph_figures, log=lambda m: print(f"edge-ls bench: {m}", file=sys.stderr))
    for path in write_results(results, args.out):
        print(path)
    for name, target in results["targets"].items():
        bound = target.get("target", target.get("note"))
        print(f"  {name}: {target.get('ratio')} ({bound}) met={target.get('met')}")
    return 0
