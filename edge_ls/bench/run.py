"""``edge-ls bench``: every tier installed here on the same labelled scenes, real peers on the same model
and scene, the targets as ratios within one run, and the results as JSON, Markdown, CSV and a PNG plot.

Every measurement runs in a fresh process (:mod:`edge_ls.bench.worker`), so each peak RSS is its own.
Rows are repeated ``repeats`` times: the median and the spread (min-max) are reported. The machine's
other load during each run is kept beside it (``other_processes_cores``): on a shared machine compare
ratios from one run, not absolute rates across runs.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edge_ls.bench.scenes import COVERS, GSD_M, cover_share, ensure_scene
from edge_ls.errors import ConfigError, EdgeLSError, ModelError

#: The targets of issue 11, as ratios within one run.
TARGETS = {
    "overlap_efficiency": ">= 0.95 (detect tiles/s over bare tiles/s, divided by the CPU ceiling)",
    "geodeep_speed": ">= 1.2 (edge-ls tiles/s over GeoDeep's, same model, scene, tile and overlap)",
    "geodeep_rss": "<= 1.0 (edge-ls peak RSS over GeoDeep's on the large scene)",
    "cascade_speed_low": ">= 3.0 (cascade tiles/s over its refiner alone, low cover)",
    "cascade_f1_loss_low": "<= 2.0 F1 points (refiner alone minus cascade, low cover)",
}
NOT_MEASURED = "not measured"


@dataclass
class BenchConfig:
    """What one ``edge-ls bench`` run measures."""

    #: Profiles or model names, one row each (a profile whose models are missing is listed, not run).
    tiers: list[str]
    covers: list[str] = field(default_factory=lambda: list(COVERS))
    size: int = 2048
    repeats: int = 3
    peers: list[str] = field(default_factory=lambda: ["geodeep"])
    #: The model the peers and the overlap-efficiency target run (edge-ls runs it too, same settings).
    peer_model: str = "model:edge-lite"
    #: The cascade profile whose benefit is measured against its refiner alone.
    cascade: str = "edge-cascade"
    #: Scenes the cascade and its refiner run on besides ``covers`` (the cascade-benefit rows).
    cascade_covers: list[str] = field(default_factory=lambda: list(COVERS))
    #: Side of the scene for the RSS comparison with the peers (None: not measured).
    large_size: int | None = None
    gpu_json: Path | None = None
    real_root: Path = Path("../shared/data/real")
    cache_dir: Path = Path.home() / ".cache" / "edge-ls" / "bench"
    work_dir: Path = Path("/tmp/edge-ls-bench")


GraphFigures = Callable[[Path, int], dict[str, Any]]


def check_config(config: BenchConfig) -> None:
    """Bad input fails before anything runs, one line each: an unknown tier, a peer not installed."""
    from edge_ls.bench.peers import require_peer
    from edge_ls.bench.scenes import load_cell_pool

    for cover in [*config.covers, *config.cascade_covers]:
        if cover not in COVERS:
            raise ConfigError(f"unknown landslide cover '{cover}': use one of {', '.join(COVERS)}")
    for peer in config.peers:
        require_peer(peer)
    for tier in [*config.tiers, config.cascade, config.peer_model]:
        _deployment(tier)  # unknown tier -> ConfigError/ModelError; not installed -> listed later
    load_cell_pool(config.real_root)  # masks that do not match their images fail here


#: A row name ``model:NAME`` runs the model NAME alone (``edge-lite`` alone is the INT8 profile).
MODEL_PREFIX = "model:"
#: ``model:NAME@views=8``: the model averaged over 8 D4 views (a cascade's refiner alone).
VIEWS_SUFFIX = "@views="
#: ``model:NAME@views=8@scales=1,0.5``: ... and over those scales.
SCALES_SUFFIX = "@scales="


def _model_row(name: str) -> tuple[str, int | None, tuple[float, ...] | None]:
    """``model:NAME[@views=N][@scales=A,B]`` -> (NAME, N or None, scales or None)."""
    full = name
    name = name[len(MODEL_PREFIX) :]
    name, sep_s, scales = name.partition(SCALES_SUFFIX)
    base, sep, views = name.partition(VIEWS_SUFFIX)
    if sep and not views.isdigit():
        raise ConfigError(f"bad row '{full}': {VIEWS_SUFFIX} takes a whole number")
    try:
        parsed = tuple(float(v) for v in scales.split(",")) if sep_s else None
    except ValueError:
        raise ConfigError(f"bad row '{full}': {SCALES_SUFFIX} takes numbers, e.g. 1,0.5") from None
    return base, int(views) if sep else None, parsed


def _deployment(name: str) -> Any:
    """The deployment a bench row name stands for: ``model:NAME`` a model alone, else a profile, else a
    model; unknown: one line. A profile whose models are missing comes back as its ModelError."""
    from edge_ls.deployment import deploy
    from edge_ls.profiles import list_profiles

    views = scales = None
    if name.startswith(MODEL_PREFIX):
        name, views, scales = _model_row(name)
    elif name in list_profiles() or name.endswith(".toml"):
        try:
            return deploy(name)
        except ModelError as exc:
            if "is not installed" in str(exc):
                return exc
            raise
    try:
        return deploy(model=name, views=views, scales=scales)
    except ModelError as exc:
        if str(exc).startswith("unknown model"):
            raise ConfigError(
                f"unknown tier '{name}': give a profile (edge-ls profiles) or a model (edge-ls models)"
            ) from None
        raise


def _job(kind: str, **job: Any) -> dict[str, Any]:
    """Run one measurement in a fresh process; its JSON line back."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "edge_ls.bench.worker", json.dumps({"kind": kind, **job}, default=str)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EdgeLSError(f"bench {kind} run failed: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _spec_of(tier: str, row: dict[str, Any]) -> dict[str, Any]:
    if tier.startswith(MODEL_PREFIX):
        name, views, scales = _model_row(tier)
        overrides = {"views": views, "scales": list(scales) if scales else None}
        return {"model": name, "overrides": {k: v for k, v in overrides.items() if v is not None}}
    return {("profile" if row["is_profile"] else "model"): tier}


def _median_spread(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(vals), 4), "min": min(vals), "max": max(vals), "n": len(vals)}


def _bare_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The bare runs' medians under their usual keys, with each key's spread and the runs beside them."""
    out: dict[str, Any] = {"tiles": runs[0]["tiles"]}
    for key in ("wall_s", "tiles_per_s", "process_cpu_s", "other_processes_cores"):
        spread = _median_spread([run[key] for run in runs])
        out[key] = spread["median"]
        out[f"{key}_spread"] = {k: spread[k] for k in ("min", "max", "n")}
    out["runs"] = runs
    return out


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    out = {
        k: first.get(k)
        for k in (
            "tiles",
            "f1",
            "iou",
            "tile_size",
            "overlap",
            "precision",
            "backend",
            "batch",
            "gsd_m",
            "peak_vram_mb",
            "runner",
        )
    }
    for key in (
        "tiles_per_s",
        "peak_rss_mb",
        "latency_min_per_km2",
        "latency_min_per_km2_at_0p1m",
        "process_cpu_s",
        "other_processes_cores",
    ):
        out[key] = _median_spread([r.get(key) for r in runs])
    out["runs"] = runs
    return out


def run_bench(config: BenchConfig, graph_figures: GraphFigures, log: Callable[[str], None] = print) -> dict:
    """Measure everything :class:`BenchConfig` asks for; return the results (see :func:`write_results`)."""
    check_config(config)
    started = time.time()
    scenes = {}
    all_covers = [c for c in COVERS if c in config.covers or c in config.cascade_covers]
    for cover in all_covers:
        image, truth = ensure_scene(config.cache_dir, config.real_root, config.size, cover)
        scenes[cover] = {"image": str(image), "truth": str(truth), "cover": round(cover_share(truth), 4)}
        log(f"scene {cover}: {image.name} ({scenes[cover]['cover']:.1%} landslide)")

    extra = [n for n in (config.peer_model, config.cascade, _refiner_row(config.cascade)) if n]
    names = list(dict.fromkeys([*config.tiers, *extra]))
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        d = _deployment(name)
        if isinstance(d, Exception):
            rows[name] = {"status": f"not installed: {d}", "is_profile": True}
            continue
        models = {
            role: {"name": m.label, **graph_figures(m.path, d.options.tile_size or m.spec.tile_size)}
            for role, m in d.models.items()
        }
        rows[name] = {
            "status": "ok",
            "is_profile": d.profile is not None,
            "models": models,
            "params": sum(m["params"] for m in models.values()),
            "gflops": round(sum(m["gflops"] for m in models.values()), 3),
            "kind": "cascade" if d.is_cascade else "single",
            "scenes": {},
        }

    refiner = _refiner_row(config.cascade)
    for cover, scene in scenes.items():
        for name, row in rows.items():
            if row["status"] != "ok":
                continue
            if not runs_on(config, name, cover, refiner):
                continue
            runs = []
            for i in range(config.repeats):
                out = config.work_dir / f"{_safe(name)}-{cover}-{i}"
                log(f"detect {name} on {cover} ({i + 1}/{config.repeats})")
                runs.append(
                    _job(
                        "detect",
                        scene=scene["image"],
                        truth=scene["truth"],
                        out=str(out),
                        **_spec_of(name, row),
                    )
                )
            row["scenes"][cover] = _aggregate(runs)

    peers = _run_peers(config, {c: s for c, s in scenes.items() if c in config.covers}, log)
    targets = _targets(config, scenes, rows, peers, log)
    gpu = _gpu_rows(config, rows)
    return {
        "command": "edge-ls bench " + " ".join(sys.argv[2:]) if len(sys.argv) > 2 else "edge-ls bench",
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "machine": _machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "scenes": scenes,
        "rows": rows,
        "peers": peers,
        "gpu": gpu,
        "targets": targets,
    }


def runs_on(config: BenchConfig, name: str, cover: str, refiner: str | None) -> bool:
    """Whether row ``name`` runs on scene ``cover``: the tiers and the peer model on ``covers``; the
    cascade and its refiner alone on ``cascade_covers`` (and on ``covers`` only when listed as tiers),
    so ``--cascade-covers ''`` costs no cascade run."""
    if cover in config.covers and name in (*config.tiers, config.peer_model):
        return True
    return cover in config.cascade_covers and name in (config.cascade, refiner)


def _refiner_row(cascade: str) -> str | None:
    """The row name of a cascade profile's refiner run alone, as the cascade runs it: ``model:NAME``,
    with ``@views=N`` when the profile averages the refiner over N D4 views and ``@scales=...`` over
    scales."""
    d = _deployment(cascade)
    if isinstance(d, Exception) or not d.is_cascade:
        return None
    views = f"{VIEWS_SUFFIX}{d.options.views}" if d.options.views > 1 else ""
    if d.options.scales != (1.0,):
        views += SCALES_SUFFIX + ",".join(f"{s:g}" for s in d.options.scales)
    return MODEL_PREFIX + d.models["refiner"].label + views


def _run_peers(config: BenchConfig, scenes: dict, log: Callable[[str], None]) -> dict[str, Any]:
    """Each peer on every scene, with the peer model wrapped in its contract."""
    from edge_ls.bench.peers import geodeep_model

    peers: dict[str, Any] = {}
    if "geodeep" not in config.peers:
        return peers
    d = _deployment(config.peer_model)
    spec = d.model.spec
    wrapped = geodeep_model(
        d.model.path,
        config.work_dir / "geodeep" / f"{_safe(config.peer_model)}.onnx",
        tile=d.options.tile_size or spec.tile_size,
        overlap=spec.overlap if d.options.overlap is None else d.options.overlap,
        gsd_m=GSD_M,
        threshold=d.threshold,
    )
    row: dict[str, Any] = {"model": config.peer_model, "scenes": {}}
    for cover, scene in scenes.items():
        runs = []
        for i in range(config.repeats):
            log(f"geodeep {config.peer_model} on {cover} ({i + 1}/{config.repeats})")
            runs.append(
                _job(
                    "geodeep",
                    scene=scene["image"],
                    truth=scene["truth"],
                    wrapped=str(wrapped),
                    out=str(config.work_dir / f"geodeep-{cover}-{i}"),
                )
            )
        row["scenes"][cover] = _aggregate(runs)
        row["version"] = runs[0]["version"]
    peers["geodeep"] = row
    return peers


def _targets(config: BenchConfig, scenes: dict, rows: dict, peers: dict, log: Callable[[str], None]) -> dict:
    """Each target: its ratio, what it is made of, and whether it is met (None: not measured)."""
    out: dict[str, Any] = {}
    # The scene the peer model ran on (``covers``; the cascade-only covers do not run it).
    ref_cover = "medium" if "medium" in config.covers else (config.covers or list(scenes))[0]
    peer_row = rows.get(config.peer_model, {})
    ours = peer_row.get("scenes", {}).get(ref_cover)
    if ours is not None:
        # As many bare runs as detect runs, medians on both sides: one bare run made the ratio swing
        # by +-0.01 between otherwise identical bench runs.
        bare_runs = []
        for i in range(config.repeats):
            log(f"bare inference {config.peer_model} on {ref_cover} ({i + 1}/{config.repeats})")
            bare_runs.append(
                _job("bare", scene=scenes[ref_cover]["image"], **_spec_of(config.peer_model, peer_row))
            )
        bare = _bare_medians(bare_runs)
        e2e = ours["tiles_per_s"]["median"] / bare["tiles_per_s"]
        ceiling = bare["process_cpu_s"] / ours["process_cpu_s"]["median"]
        out["overlap_efficiency"] = _target(
            e2e / ceiling,
            0.95,
            ">=",
            scene=ref_cover,
            bare=bare,
            e2e_over_bare=round(e2e, 4),
            cpu_ceiling=round(ceiling, 4),
        )
    gd = peers.get("geodeep", {}).get("scenes", {}).get(ref_cover)
    if gd is not None and ours is not None:
        ratio = ours["tiles_per_s"]["median"] / gd["tiles_per_s"]["median"]
        # Tiles per CPU-second of each process: what the wall-clock ratio means on an idle machine, and
        # the figure to read when other processes take the cores (other_processes_cores).
        per_cpu = gd["process_cpu_s"]["median"] / ours["process_cpu_s"]["median"]  # same tiles
        out["geodeep_speed"] = _target(
            ratio,
            1.2,
            ">=",
            tiles_per_cpu_s_ratio=round(per_cpu, 4),
            other_processes_cores={
                "edge_ls": ours["other_processes_cores"],
                "geodeep": gd["other_processes_cores"],
            },
            scene=ref_cover,
            edge_ls_tiles_per_s=ours["tiles_per_s"],
            geodeep_tiles_per_s=gd["tiles_per_s"],
        )
    out["geodeep_rss"] = (
        _large_rss(config, log)
        if config.large_size and "geodeep" in peers
        else {"met": None, "ratio": None, "note": f"{NOT_MEASURED}: no --large-size given"}
    )
    cascade = rows.get(config.cascade, {})
    if cascade.get("status") == "ok" and "low" in cascade.get("scenes", {}):
        refiner = _refiner_row(config.cascade)
        base = rows.get(refiner, {}).get("scenes", {}).get("low")
        if base is None:
            for key in ("cascade_speed_low", "cascade_f1_loss_low"):
                out[key] = {"met": None, "note": f"{NOT_MEASURED}: add the refiner '{refiner}' to --tiers"}
        else:
            c = cascade["scenes"]["low"]
            ratio = c["tiles_per_s"]["median"] / base["tiles_per_s"]["median"]
            out["cascade_speed_low"] = _target(
                ratio, 3.0, ">=", refiner=refiner, refined_share=c["runner"]["cascade"]["refined_share"]
            )
            out["cascade_f1_loss_low"] = _target(
                base["f1"] - c["f1"], 2.0, "<=", refiner_f1=base["f1"], cascade_f1=c["f1"]
            )
    return out


def _large_rss(config: BenchConfig, log: Callable[[str], None]) -> dict[str, Any]:
    """Peak RSS of edge-ls and GeoDeep on one large scene (low cover), one run each."""
    from edge_ls.bench.peers import geodeep_model

    assert config.large_size is not None
    image, truth = ensure_scene(config.cache_dir, config.real_root, config.large_size, "low")
    row = {"is_profile": False}
    log(f"large scene {config.large_size}²: edge-ls")
    ours = _job(
        "detect",
        scene=str(image),
        truth=str(truth),
        out=str(config.work_dir / "large-edge-ls"),
        **_spec_of(config.peer_model, row),
    )
    d = _deployment(config.peer_model)
    wrapped = geodeep_model(
        d.model.path,
        config.work_dir / "geodeep" / "large.onnx",
        tile=d.options.tile_size or d.model.spec.tile_size,
        overlap=d.model.spec.overlap,
        gsd_m=GSD_M,
        threshold=d.threshold,
    )
    log(f"large scene {config.large_size}²: geodeep")
    theirs = _job(
        "geodeep",
        scene=str(image),
        truth=str(truth),
        wrapped=str(wrapped),
        out=str(config.work_dir / "large-geodeep"),
    )
    return _target(
        ours["peak_rss_mb"] / theirs["peak_rss_mb"],
        1.0,
        "<=",
        size=config.large_size,
        edge_ls=ours,
        geodeep=theirs,
    )


def _target(ratio: float, bound: float, op: str, **behind: Any) -> dict[str, Any]:
    met = ratio >= bound if op == ">=" else ratio <= bound
    return {"ratio": round(ratio, 4), "target": f"{op} {bound}", "met": bool(met), **behind}


def _gpu_rows(config: BenchConfig, rows: dict) -> dict[str, Any]:
    """GPU figures from ``bench/gpu_tiers.py``'s JSON when given; else every tier: 'not measured'."""
    if config.gpu_json is None:
        return {
            "measured": False,
            "note": f"{NOT_MEASURED} (no GPU lent to this run)",
            "rows": {name: NOT_MEASURED for name in rows},
        }
    try:
        data = json.loads(Path(config.gpu_json).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read GPU results {config.gpu_json}: {exc}") from None
    if not isinstance(data, dict) or "rows" not in data or "device" not in data:
        raise ConfigError(f"{config.gpu_json} is not a bench/gpu_tiers.py result (needs 'device' and 'rows')")
    return {"measured": True, "device": data["device"], "source": str(config.gpu_json), "rows": data["rows"]}


def _machine() -> dict[str, Any]:
    import onnxruntime

    return {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


def _safe(name: str) -> str:
    return name.replace(":", "_").replace("/", "_")


# ------------------------------------------------------------------------------------------- outputs

COLUMNS = (
    "row",
    "scene",
    "kind",
    "params",
    "gflops",
    "tile",
    "batch",
    "precision",
    "backend",
    "tiles_per_s",
    "tiles_per_s_spread",
    "peak_rss_mb",
    "peak_vram_mb",
    "min_per_km2",
    "min_per_km2_at_0p1m",
    "f1",
    "iou",
    "refined_share",
)


def table_rows(results: dict) -> list[dict[str, Any]]:
    """One flat row per (tier or peer, scene): what the Markdown and CSV show."""
    out = []

    def add(name: str, kind: str, meta: dict, cover: str, s: dict) -> None:
        tps = s["tiles_per_s"]
        cascade = (s.get("runner") or {}).get("cascade") or {}
        out.append(
            {
                "row": name,
                "scene": cover,
                "kind": kind,
                "params": meta.get("params"),
                "gflops": meta.get("gflops"),
                "tile": s.get("tile_size"),
                "batch": s.get("batch"),
                "precision": s.get("precision"),
                "backend": s.get("backend"),
                "tiles_per_s": tps["median"],
                "tiles_per_s_spread": f"{tps['min']}-{tps['max']}" if tps["n"] else None,
                "peak_rss_mb": s["peak_rss_mb"]["median"],
                "peak_vram_mb": s.get("peak_vram_mb"),
                "min_per_km2": s["latency_min_per_km2"]["median"],
                "min_per_km2_at_0p1m": s["latency_min_per_km2_at_0p1m"]["median"],
                "f1": s["f1"],
                "iou": s["iou"],
                "refined_share": cascade.get("refined_share"),
            }
        )

    for name, row in results["rows"].items():
        if row["status"] != "ok":
            continue
        for cover, s in row["scenes"].items():
            add(name, row["kind"], row, cover, s)
    for peer, row in results["peers"].items():
        meta = results["rows"].get(row["model"], {})
        for cover, s in row["scenes"].items():
            s = {
                **s,
                "tile_size": None,
                "batch": 1,
                "precision": "fp32",
                "backend": f"{peer} {row['version']}",
            }
            pseudo = {"params": meta.get("params"), "gflops": meta.get("gflops")}
            add(f"{peer} ({row['model']})", "peer", pseudo, cover, s)
    return out


def _per_km2_for_peers(results: dict) -> None:
    """A peer's min/km² from its tiles/s and the same grid as edge-ls's row for its model."""
    for row in results["peers"].values():
        ours = results["rows"].get(row["model"], {}).get("scenes", {})
        for cover, s in row["scenes"].items():
            ref = ours.get(cover)
            if ref is None:
                continue
            for key in ("latency_min_per_km2", "latency_min_per_km2_at_0p1m"):
                scale = ref[key]["median"] * ref["tiles_per_s"]["median"]  # tiles_per_km2 / 60
                s[key] = _median_spread([scale / r["tiles_per_s"] for r in s["runs"]])
            s["tile_size"], s["precision"] = ref.get("tile_size"), ref.get("precision")


def write_results(results: dict, out_base: Path) -> list[Path]:
    """``<out_base>.json``, ``.md``, ``.csv`` and ``.png`` (F1 against min/km², one point per row)."""
    _per_km2_for_peers(results)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_base.with_suffix(s) for s in (".json", ".md", ".csv", ".png")]
    paths[0].write_text(json.dumps(results, indent=2, default=str) + "\n")
    flat = table_rows(results)
    paths[1].write_text(to_markdown(results, flat))
    with paths[2].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(flat)
    paths[3].write_bytes(plot_png(flat))
    return paths


def to_markdown(results: dict, flat: list[dict[str, Any]]) -> str:
    lines = [
        f"# edge-ls bench ({results['started']})",
        "",
        f"Command: `{results['command']}`",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in results["machine"].items()),
        "",
    ]
    lines += [
        "Scenes: " + ", ".join(f"{c} {s['cover']:.1%} landslide" for c, s in results["scenes"].items()),
        "",
    ]
    lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join("" if r[c] is None else str(r[c]) for c in COLUMNS) + " |" for r in flat]
    missing = [f"- {n}: {r['status']}" for n, r in results["rows"].items() if r["status"] != "ok"]
    if missing:
        lines += ["", "Not run:", *missing]
    lines += ["", "## GPU", ""]
    gpu = results["gpu"]
    if gpu["measured"]:
        lines += [f"Measured on {gpu['device']} ({gpu['source']}), PyTorch, 512 px:", ""]
        lines += [f"- {r}" for r in gpu["rows"]]
    else:
        lines += [f"Every tier: {gpu['note']}."]
    lines += ["", "## Targets", "", "| target | ratio | bound | met |", "|---|---|---|---|"]
    for name, t in results["targets"].items():
        lines.append(f"| {name} | {t.get('ratio')} | {t.get('target', '')} | {t.get('met')} |")
    return "\n".join(lines) + "\n"


def plot_png(flat: list[dict[str, Any]], width: int = 720, height: int = 480) -> bytes:
    """F1 against min/km² (log x), one point per row on the medium scene (else the first), peers as
    squares, edge-ls rows as circles; drawn with OpenCV (no plotting dependency)."""
    import cv2
    import numpy as np

    scene = "medium" if any(r["scene"] == "medium" for r in flat) else (flat[0]["scene"] if flat else "")
    pts = [r for r in flat if r["scene"] == scene and r["min_per_km2"] and r["f1"] is not None]
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 70, width - 20, 40, height - 60
    cv2.rectangle(img, (left, top), (right, bottom), (0, 0, 0), 1)
    title = f"F1 vs min/km2 ({scene} cover scene); squares: peers"
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(
        img,
        "min per km2 (log)",
        (width // 2 - 60, height - 20),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (0, 0, 0),
        1,
        cv2.LINE_AA,
    )
    cv2.putText(img, "F1 %", (10, top + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    if pts:
        xs = np.log10([r["min_per_km2"] for r in pts])
        lo, hi = float(xs.min()) - 0.2, float(xs.max()) + 0.2
        fmax = max(10.0, max(r["f1"] for r in pts) * 1.15)
        for tick in range(0, int(fmax) + 1, 10):
            y = int(bottom - (bottom - top) * tick / fmax)
            cv2.putText(img, str(tick), (40, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for d in range(int(np.floor(lo)), int(np.ceil(hi)) + 1):
            x = int(left + (right - left) * (d - lo) / (hi - lo))
            if left <= x <= right:
                cv2.putText(img, f"1e{d}", (x - 10, bottom + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        for i, (r, xv) in enumerate(zip(pts, xs, strict=True)):
            x = int(left + (right - left) * (xv - lo) / (hi - lo))
            y = int(bottom - (bottom - top) * r["f1"] / fmax)
            if r["kind"] == "peer":
                cv2.rectangle(img, (x - 6, y - 6), (x + 6, y + 6), (40, 40, 200), -1)
            else:
                cv2.circle(img, (x, y), 6, (200, 90, 30), -1)
            dy = 16 * (i % 4) - 24  # staggered: rows often sit close together
            cv2.line(img, (x, y), (x + 8, y + dy - 4), (150, 150, 150), 1)
            font = cv2.FONT_HERSHEY_SIMPLEX
            cv2.putText(img, r["row"], (x + 9, y + dy), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    assert ok
    return png.tobytes()
