"""Issue #4's benchmark: every tier through ONNX Runtime on this machine, FP32 vs INT8 vs pruned+INT8.

Run ``python bench/tiers.py --json OUT.json [--tiers edge-lite,edge-cascade] [--quick]``. Per tier and
variant: params, GFLOPs (at the tier's tile), ONNX size, tiles/s, peak RSS, and pixel F1/IoU on the
real labelled sets ``cas_hokkaido`` and ``bijie`` (72 tiles, 512 px), with the F1 delta against FP32.
Targets (issue #4): INT8 >= 1.5x FP32 tiles/s with <= 1 point of F1 lost; pruned+INT8 Edge-Lite
>= 25 tiles/s at 512 px on the 2 cores.

How: models come from ``edge_ls.training.networks.build_model`` -- with trained weights when
``--checkpoint TIER[:ROLE]=RUN`` gives a training run folder, else random weights (seed 0), in which
case F1/IoU and their deltas say nothing about landslides (the JSON says which). Each artifact is
packaged by the export driver (``edge_ls.export.driver.ExportRequest`` -> ``export_tier``), the sequence
``edge-ls export`` runs: INT8 calibrated
on 16 real ``cas_unlabeled`` tiles (disjoint from the evaluation sets) with the depthwise convolutions
kept float, pruning 50% of channels rounded to multiples of 8 (the channels feeding the head kept),
then, for a trained model, distillation from the unpruned model with the supervised soft-IoU on the
train split and the student's own temperature fitted on the val split (no fine-tuning without a
trained teacher). ``--build-only`` builds the cache and measures nothing. Every measurement runs in a
fresh subprocess (peak RSS is per process; no warm caches shared), ONNX Runtime CPU, 2 threads, the
tier profile's tile and batch (``--batch`` overrides the batch).
The machine's load average is recorded: other jobs on these shared cores slow every figure.
Artifacts are cached under ``~/.cache/edge-ls/bench/tiers`` (``--rebuild`` to redo them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.profiles import load_profile

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
REAL = SHARED / "data" / "real"
EVAL_SETS = ("cas_hokkaido", "bijie")
CALIB_SET = "cas_unlabeled"
CACHE = Path(os.environ.get("EDGE_LS_CACHE", Path.home() / ".cache" / "edge-ls")) / "bench" / "tiers"
#: 3: U-Net decoder widths deep -> shallow (training/networks.py fix). 4: pruning keeps the head's input
#: channels, distillation adds soft-IoU, pruned temperature fitted on val, INT8 keeps depthwise float.
#: 5: every variant packaged by the export driver (``edge_ls.export.driver``), as ``edge-ls export`` does.
BUILD_VERSION = 5
PRUNE_RATIO = 0.5
ROUND_TO = 8
CALIB_TILES = 16
#: The committed split: trained models are evaluated on its test tiles, pruned ones fine-tuned on train.
SPLIT_FILE = REPO / "training" / "configs" / "real_split.json"
#: Distillation steps that recover a pruned trained model from its unpruned self (train split, 256 px;
#: ``distill_fine_tune``'s Adam lr 1e-4 and soft-IoU x 1: val F1 of pruned Edge-Lite, lr 1e-4 64.2, 5e-4
#: 56.9); fewer for the ~80 M-parameter fusion family (a step there costs ~30x an Edge-Lite step).
FINE_TUNE_STEPS = 150
FUSION_FINE_TUNE_STEPS = 40
#: Labelled set (and tiles) the export driver measures each quantized variant's F1 delta on while it
#: builds; the benchmark's own figures come from both :data:`EVAL_SETS` afterwards.
DRIVER_EVAL_SET = "bijie"
DRIVER_EVAL_TILES = 4
ROI_THRESHOLD = 0.3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: tier -> roles (model-family names), eval tiles per set (None = all). Tile and batch are the tier
#: profile's (``profiles/<tier>.toml``); ``--batch`` overrides the batch for a small machine.
TIERS: dict[str, dict[str, Any]] = {
    "edge-lite": {"models": {"primary": "edge_lite"}, "eval": None},
    "edge-cascade": {"models": {"triage": "cascade_triage", "refiner": "cascade_refiner"}, "eval": None},
    "fusion": {"models": {"primary": "fusion"}, "eval": 6},
    "fusion-gan": {"models": {"primary": "fusion_gan"}, "eval": 6},
    "fusion-gan-large": {"models": {"primary": "fusion_gan"}, "eval": 0, "same_as": "fusion-gan"},
}
for _tier, _cfg in TIERS.items():
    _cfg["tile"], _cfg["batch"] = load_profile(_tier).tile, load_profile(_tier).batch

VARIANTS = ("fp32", "int8", "pruned-fp32", "pruned-int8")


# ------------------------------------------------------------------------------------------ build
def _spec(name: str, tier: str, tile: int, provenance: dict[str, Any]) -> Any:
    from edge_ls.artifact import ModelSpec

    return ModelSpec(
        name=name,
        tier=tier,
        bands=("red", "green", "blue"),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_range="8bit",
        gsd_m=1.0,
        tile_size=tile,
        overlap=0.2,
        activation="logits",
        threshold=0.5,
        provenance=provenance,
    )


def _random_run(family: str, tier: str, role: str, tile: int, run_dir: Path) -> Path:
    """A training run folder holding the untrained network (seed 0), so the export driver packages a
    model with random weights exactly as it packages a trained run (``config.json`` + ``best.pt`` +
    ``spec.json``; no pretrained weights claimed)."""
    import torch

    from edge_ls.training.config import Config, ModelConfig
    from edge_ls.training.networks import build_model
    from edge_ls.training.trainer import BEST, CONFIG_FILE, SPEC_FILE

    if (run_dir / SPEC_FILE).is_file():
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = build_model(family).eval()
    torch.save(model.state_dict(), run_dir / BEST)
    cfg = Config(model=ModelConfig(name=family, pretrained=False))
    cfg.data.roots = [str(REAL / name) for name in EVAL_SETS]  # what it would train on; it did not
    (run_dir / CONFIG_FILE).write_text(json.dumps(cfg.to_dict(), indent=2, sort_keys=True))
    weights = "random (seed 0)"
    spec = _spec(
        f"{tier}-{role}", tier, tile, {"model": family, "weights": weights, "pretrained_weights": None}
    )
    (run_dir / SPEC_FILE).write_text(spec.to_json())
    return run_dir


def _split_folder(split: str) -> Path:
    """One split of the committed split file as a labelled folder (``images/`` + ``masks/``, links to
    the real tiles, both sets in :data:`EVAL_SETS` order), for the export driver to read."""
    names = _split_names(split) or set()
    folder = CACHE / "splits" / split
    if (folder / "images").is_dir():
        return folder
    staging = folder.with_name(f".{split}.staging")
    for sub in ("images", "masks"):
        (staging / sub).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(EVAL_SETS):
        for image in sorted((REAL / name / "images").iterdir()):
            if f"{name}/{image.stem}" in names:
                stem = f"{k}-{name}-{image.stem}"
                (staging / "images" / f"{stem}{image.suffix}").symlink_to(image)
                (staging / "masks" / f"{stem}.png").symlink_to(REAL / name / "masks" / f"{image.stem}.png")
    staging.rename(folder)
    return folder


def build_role(
    tier: str,
    role: str,
    family: str,
    tile: int,
    checkpoint: str | None,
    rebuild: bool,
    log: Any,
    prune: bool = True,
) -> dict[str, Any]:
    """FP32, INT8, pruned FP32 and pruned INT8 ONNX files for one model; cached.

    Each pair (FP32 + INT8, then pruned FP32 + INT8) is packaged by the export driver from an
    :class:`~edge_ls.export.driver.ExportRequest`, the sequence ``edge-ls export`` runs: INT8
    calibrated on :data:`CALIB_SET`, a trained model's pruned student distilled on the train split
    (256 px) with its temperature fitted on the val split. ``prune=False`` (``--no-prune``): FP32 and
    INT8 only. FP32/INT8 files left by an earlier build (stopped while pruning, or built with
    ``--no-prune``) are reused: each was complete before the next step started.
    """
    tag = "ckpt-" + Path(checkpoint).name if checkpoint else "random0"
    folder = CACHE / f"v{BUILD_VERSION}" / f"{family}-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {v: folder / f"{v}.onnx" for v in VARIANTS}
    info_path = folder / "build.json"
    wanted = VARIANTS if prune else ("fp32", "int8")
    if not rebuild and info_path.is_file() and all(paths[v].is_file() for v in wanted):
        return json.loads(info_path.read_text())
    weights = f"trained: {checkpoint}" if checkpoint else "random (seed 0)"
    if not prune and not rebuild and all(paths[v].is_file() for v in wanted):
        info = {
            "family": family,
            "weights": weights,
            "files": {v: str(paths[v]) for v in wanted},
            "prune_error": "not pruned (--no-prune)",
        }
        info_path.write_text(json.dumps(info, indent=2))
        return info
    run = Path(checkpoint) if checkpoint else _random_run(family, tier, role, tile, folder / "random-run")
    files = {k: str(v) for k, v in paths.items()}
    info: dict[str, Any] = {"family": family, "weights": weights, "files": files}
    if not rebuild and paths["fp32"].is_file() and paths["int8"].is_file():
        # Left by a --no-prune build (each file was complete before the next step started): only the
        # pruned variants are missing, and the fusion family's export + INT8 take many CPU minutes.
        log(f"  {family}: FP32 and INT8 reused from {folder}")
        earlier = json.loads(info_path.read_text()) if info_path.is_file() else {}
        info.update({k: earlier[k] for k in ("export_s",) if k in earlier})
    else:
        t0 = time.perf_counter()
        log(f"  {family}: export FP32 + INT8 (calibrating on {CALIB_TILES} {CALIB_SET} tiles)")
        _export(_request(tier, role, run, tile), folder, {"fp32": paths["fp32"], "int8": paths["int8"]})
        info["export_s"] = time.perf_counter() - t0
    if not prune:
        info["prune_error"] = "not pruned (--no-prune)"
        for v in ("pruned-fp32", "pruned-int8"):
            info["files"].pop(v, None)
        info_path.write_text(json.dumps(info, indent=2))
        return info
    log(f"  {family}: prune {PRUNE_RATIO:.0%} (round_to {ROUND_TO})")
    try:
        steps = 0
        if checkpoint:  # a trained model: recover the pruned one by distillation on the train split
            steps = FUSION_FINE_TUNE_STEPS if family.startswith("fusion") else FINE_TUNE_STEPS
            info["fine_tune"] = {"steps": steps, "split": "train", "size": 256}
        request = _request(tier, role, run, tile, pruned=True, fine_tune_steps=steps)
        export_info = _export(request, folder, {"fp32": paths["pruned-fp32"], "int8": paths["pruned-int8"]})
        info["prune"] = export_info.get(role, {}).get("prune")
    except Exception as exc:  # a pruning failure is a result to report, not a crash
        info["prune_error"] = f"{type(exc).__name__}: {exc}"[:300]
        log(f"  {family}: pruning failed: {info['prune_error']}")
        for v in ("pruned-fp32", "pruned-int8"):
            paths[v].unlink(missing_ok=True)
            info["files"].pop(v, None)
    info_path.write_text(json.dumps(info, indent=2))
    return info


def _request(
    tier: str, role: str, run: Path, tile: int, pruned: bool = False, fine_tune_steps: int = 0
) -> Any:
    """The export request of one role: FP32 + INT8 at the tier's tile, pruned when asked. The F1 budget
    is not enforced here (the benchmark reports the delta it measures on both sets)."""
    from edge_ls.export.driver import ExportRequest

    return ExportRequest(
        tier=tier,
        out=Path(),  # set by _export
        checkpoint=[(role, run)],
        precision=("fp32", "int8"),
        prune=PRUNE_RATIO if pruned else None,
        round_to=ROUND_TO,
        fine_tune_steps=fine_tune_steps,
        fine_tune_data=_split_folder("train") if fine_tune_steps else None,
        fine_tune_size=256,
        temperature_data=_split_folder("val") if fine_tune_steps else None,
        calib=REAL / CALIB_SET,
        eval=REAL / DRIVER_EVAL_SET,
        calib_tiles=CALIB_TILES,
        eval_tiles=DRIVER_EVAL_TILES,
        tile_size=tile,
        budget=100.0,
        quiet=True,
        command=f"bench/tiers.py build {tier} {role}" + (" pruned" if pruned else ""),
    )


def _export(request: Any, folder: Path, targets: dict[str, Path]) -> dict[str, Any]:
    """Run ``request`` through the export driver into a scratch folder, move each precision's file
    to ``targets[precision]``; returns the driver's export info (the manifest's ``info``)."""
    import dataclasses
    import shutil

    from edge_ls.export.driver import export_tier
    from edge_ls.manifest import MANIFEST_FILE, model_filename

    scratch = folder / ".export"
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        tier_dir = export_tier(dataclasses.replace(request, out=scratch))
        role = request.checkpoint[0][0]
        for precision, target in targets.items():
            (tier_dir / model_filename(role, precision)).replace(target)
        return json.loads((tier_dir / MANIFEST_FILE).read_text()).get("info", {})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def graph_figures(path: str, tile: int) -> dict[str, Any]:
    import onnx

    from edge_ls.export.flops import graph_cost

    cost = graph_cost(onnx.load(path), tile)
    size_mb = Path(path).stat().st_size / 2**20
    return {"params": cost.params, "gflops": round(cost.gflops, 3), "onnx_mb": round(size_mb, 2)}


# ---------------------------------------------------------------------------------------- measure
def _session(path: str, threads: int) -> Any:
    from edge_ls.backends.onnxrt import open_session

    return open_session(path, threads=threads, inter_op_threads=1)


def _timing_tiles(tile: int, batch: int) -> np.ndarray:
    """Real tiles at ``tile`` px: 512-px CAS tiles, 2x2 mosaics of them for larger tiles."""
    from edge_ls.io.labelled import load_tiles

    spec = _spec("t", "t", 512, {})
    base = load_tiles(REAL / "cas_hokkaido", spec, size=512, limit=max(4, batch * 4))
    reps = -(-tile // 512)
    tiles = [np.tile(base[i], (1, reps, reps))[:, :tile, :tile] for i in range(batch)]
    return np.ascontiguousarray(np.stack(tiles), dtype=np.float32)


def _throughput(
    run: Any, batch_x: np.ndarray, min_seconds: float, min_batches: int, streams: int = 1
) -> dict[str, float]:
    """Tiles/s with ``streams`` threads calling the session at once (as ``edge-ls detect`` does)."""
    import threading

    for _ in range(streams):
        run(batch_x)  # warm-up: session init, allocations (per stream)
    counts = [0] * streams
    start = time.perf_counter()

    def loop(i: int) -> None:
        while counts[i] < min_batches or time.perf_counter() - start < min_seconds:
            run(batch_x)
            counts[i] += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(streams)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    tiles = sum(counts) * len(batch_x)
    return {
        "tiles_per_s": tiles / elapsed,
        "ms_per_tile": 1000 * elapsed / tiles,
        "timed_tiles": tiles,
        "streams": streams,
    }


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """One variant in this (fresh) process: throughput, peak RSS, then F1/IoU on the real sets."""
    from edge_ls.io.labelled import load_labelled
    from edge_ls.metrics import PixelMetrics, percent_scores
    from edge_ls.report import peak_rss_mb

    threads, tile, batch = args["threads"], args["tile"], args["batch"]
    streams = args.get("streams", 1)
    roles = args["files"]  # role -> path
    sessions = {role: _session(path, max(1, threads // streams)) for role, path in roles.items()}
    names = {role: s.get_inputs()[0].name for role, s in sessions.items()}

    def infer(role: str, x: np.ndarray) -> np.ndarray:
        return np.asarray(sessions[role].run(None, {names[role]: x})[0], np.float32)

    cascade = "triage" in roles
    x = _timing_tiles(tile, batch)
    out: dict[str, Any] = {}
    if cascade:
        # Per-model speed; the cascade's own tiles/s comes from the real ROI share below.
        out["triage"] = _throughput(lambda b: infer("triage", b), x, args["min_seconds"], 2, streams)
        out["refiner"] = _throughput(lambda b: infer("refiner", b), x, args["min_seconds"], 2, streams)
    else:
        out.update(_throughput(lambda b: infer("primary", b), x, args["min_seconds"], 2, streams))
    out["peak_rss_mb"] = peak_rss_mb()
    if not args["eval_tiles"] and args["eval_tiles"] is not None:
        return out

    from edge_ls.artifact import read_spec

    spec = read_spec(next(iter(roles.values())))
    per_set: dict[str, Any] = {}
    pooled = PixelMetrics(threshold=spec.threshold)
    routed = total = 0
    split = _split_names(args.get("eval_split"))
    for name in EVAL_SETS:
        data = load_labelled(REAL / name, spec, size=512)
        if split is not None:  # trained models: only tiles no model saw in training or validation
            data = data.subset([i for i, n in enumerate(data.names) if f"{name}/{n}" in split])
        if args["eval_tiles"]:
            data = data.subset(range(min(len(data), args["eval_tiles"])))
        counts = PixelMetrics(threshold=spec.threshold)
        for i in range(0, len(data), batch):
            xb = np.ascontiguousarray(data.images[i : i + batch])
            if cascade:
                p = spec.probabilities(infer("triage", xb))
                hit = p.reshape(len(xb), -1).max(axis=1) >= ROI_THRESHOLD
                prob = np.zeros_like(p)
                if hit.any():
                    prob[hit] = spec.probabilities(infer("refiner", np.ascontiguousarray(xb[hit])))
                routed += int(hit.sum())
            else:
                prob = spec.probabilities(infer("primary", xb))
            masks = data.masks[i : i + batch]
            counts.update(prob.reshape(masks.shape), masks)
            total += len(xb)
        per_set[name] = {**percent_scores(counts.compute()), "tiles": len(data)}
        pooled.merge(counts)
    out["accuracy"] = {**percent_scores(pooled.compute()), "tiles": total, "per_set": per_set}
    if cascade:
        share = routed / total if total else 1.0
        t, r = out["triage"]["ms_per_tile"], out["refiner"]["ms_per_tile"]
        out["roi_share"] = share
        out["tiles_per_s"] = 1000 / (t + share * r)
        out["ms_per_tile"] = t + share * r
    return out


def _split_names(split: str | None) -> set[str] | None:
    """``<set>/<stem>`` names of one split of the committed split file (None: every tile)."""
    if not split:
        return None
    return set(json.loads(SPLIT_FILE.read_text())["splits"][split])


def run_measure(
    files: dict[str, str],
    tile: int,
    batch: int,
    threads: int,
    eval_tiles: int | None,
    min_seconds: float,
    streams: int = 1,
    eval_split: str | None = None,
) -> dict[str, Any]:
    payload = {
        "files": files,
        "tile": tile,
        "batch": batch,
        "threads": threads,
        "streams": streams,
        "eval_tiles": eval_tiles,
        "min_seconds": min_seconds,
        "eval_split": eval_split,
    }
    proc = subprocess.run(
        [sys.executable, __file__, "--measure", json.dumps(payload)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main
def _machine() -> dict[str, Any]:
    import onnxruntime
    import torch

    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "processor": _cpu_name(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _checkpoints(values: list[str]) -> dict[tuple[str, str], str]:
    out = {}
    for v in values:
        key, _, path = v.partition("=")
        tier, _, role = key.partition(":")
        out[(tier, role or "primary")] = path
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--tiers", default=",".join(TIERS), help=f"comma list of {', '.join(TIERS)}")
    p.add_argument("--quick", action="store_true", help="edge tiers only, 4 eval tiles per set, 3 s timing")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--no-prune",
        type=lambda v: set(v.split(",")),
        default=set(),
        metavar="TIER,...",
        help="tiers built without the pruned variants (pruning the fusion family with "
        "torch-pruning ran > 30 CPU-min on 2 cores without finishing)",
    )
    p.add_argument(
        "--streams",
        type=int,
        default=2,
        help="threads calling each session at once, threads // streams ORT threads each "
        "(default 2: how edge-ls detect runs on 2 cores)",
    )
    p.add_argument("--min-seconds", type=float, default=8.0, help="timing duration per variant")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        help="timing batch for every tier (default: each tier profile's batch)",
    )
    p.add_argument("--checkpoint", action="append", default=[], metavar="TIER[:ROLE]=RUN")
    p.add_argument("--rebuild", action="store_true")
    p.add_argument(
        "--build-only",
        action="store_true",
        help="build (or check) the cached artifacts and measure nothing: prebuild, then time",
    )
    p.add_argument("--measure", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return 0

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    if args.quick:
        tiers = [t for t in tiers if t.startswith("edge")]
        args.min_seconds = min(args.min_seconds, 3.0)
    unknown = [t for t in tiers if t not in TIERS]
    if unknown:
        p.error(f"unknown tier(s) {unknown}: known {', '.join(TIERS)}")
    ckpts = _checkpoints(args.checkpoint)
    results: dict[str, Any] = {
        "benchmark": "issue #4 tiers",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "load_avg_start": os.getloadavg(),
        "threads": args.threads,
        "eval_sets": list(EVAL_SETS),
        "calibration": f"{CALIB_SET}, {CALIB_TILES} tiles",
        "prune": {
            "ratio": PRUNE_RATIO,
            "round_to": ROUND_TO,
            "keeps": "the channels feeding the head (edge_ls.export.prune.head_inputs)",
            "fine_tune": f"trained models: {FINE_TUNE_STEPS} distillation steps (+ soft-IoU, Adam lr "
            f"1e-4: distill_fine_tune's defaults) on the train split ({FUSION_FINE_TUNE_STEPS} for the "
            "fusion family), temperature refit on val",
        },
        "int8_float_nodes": "first and last conv, sigmoids, depthwise convs",
        "command": "python bench/tiers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "tiers": {},
    }
    for tier in tiers:
        cfg = TIERS[tier]
        log(f"{tier}: building")
        builds = {
            role: build_role(
                tier,
                role,
                fam,
                cfg["tile"],
                ckpts.get((tier, role)),
                args.rebuild,
                log,
                prune=tier not in args.no_prune,
            )
            for role, fam in cfg["models"].items()
        }
        if args.build_only:
            for role, b in builds.items():
                folder = Path(next(iter(b["files"].values()))).parent
                log(
                    f"  {role}: {', '.join(sorted(b['files']))} in {folder}"
                    + (f" ({b['prune_error']})" if b.get("prune_error") else "")
                )
            continue
        eval_tiles = 4 if args.quick and cfg["eval"] != 0 else cfg["eval"]
        batch = args.batch or cfg["batch"]
        row: dict[str, Any] = {"tile": cfg["tile"], "batch": batch, "models": {}, "variants": {}}
        for role, b in builds.items():
            row["models"][role] = {
                "family": b["family"],
                "weights": b["weights"],
                "prune": b.get("prune"),
                "prune_error": b.get("prune_error"),
            }
        for variant in VARIANTS:
            files = {role: b["files"][variant] for role, b in builds.items() if variant in b["files"]}
            if len(files) != len(builds):
                row["variants"][variant] = {"error": "not built (see models.*.prune_error)"}
                continue
            log(f"{tier}: measuring {variant}")
            figures = {role: graph_figures(f, cfg["tile"]) for role, f in files.items()}
            trained = all(not b["weights"].startswith("random") for b in builds.values())
            m = run_measure(
                files,
                cfg["tile"],
                batch,
                args.threads,
                eval_tiles,
                args.min_seconds,
                args.streams,
                "test" if trained else None,
            )
            m["eval_split"] = "test (training/configs/real_split.json)" if trained else "all tiles"
            m["graph"] = figures
            m["load_avg"] = os.getloadavg()
            row["variants"][variant] = m
            log(
                f"  {variant}: {m.get('tiles_per_s', float('nan')):.2f} tiles/s, "
                f"F1 {m.get('accuracy', {}).get('f1', float('nan')):.2f}, {m.get('error', '')}"
            )
        if cfg.get("same_as") and cfg["same_as"] in results["tiers"]:
            row["accuracy_note"] = f"same model as {cfg['same_as']}: its F1/IoU (512 px tiles) apply"
        row["targets"] = _targets(tier, row)
        results["tiers"][tier] = row
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=float))
    results["load_avg_end"] = os.getloadavg()
    if args.build_only:
        return 0
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
        log(f"wrote {args.json}")
    else:
        print(json.dumps(results, indent=2, default=float))
    return 0


def _targets(tier: str, row: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked where this row can check them."""
    v = row["variants"]

    def tps(name: str) -> float | None:
        return v.get(name, {}).get("tiles_per_s")

    def f1(name: str) -> float | None:
        return v.get(name, {}).get("accuracy", {}).get("f1")

    out: dict[str, Any] = {}
    if tps("fp32") and tps("int8"):
        out["int8_speedup"] = tps("int8") / tps("fp32")
        out["int8_speedup_ok"] = out["int8_speedup"] >= 1.5
    if f1("fp32") is not None and f1("int8") is not None:
        out["int8_delta_f1"] = f1("fp32") - f1("int8")
        out["int8_delta_f1_ok"] = out["int8_delta_f1"] <= 1.0
    if tier == "edge-lite" and tps("pruned-int8"):
        out["pruned_int8_tiles_per_s"] = tps("pruned-int8")
        out["pruned_int8_25_tiles_per_s_ok"] = tps("pruned-int8") >= 25.0
    weights = {m["weights"] for m in row["models"].values()}
    if any(w.startswith("random") for w in weights):
        out["note"] = "random weights: F1 and its delta do not measure landslide accuracy"
    return out


if __name__ == "__main__":
    sys.exit(main())
