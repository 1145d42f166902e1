"""Training benchmark: throughput and peak RSS per model at 128 and 256 px, and dev-split metrics.

Run ``python bench/training.py --json OUT.json [--models edge_lite,fusion] [--sizes 128,256]
[--runs runs] [--skip-speed] [--skip-metrics]``.

Speed: every (model, size) is measured in a fresh subprocess (peak RSS is per process: VmHWM),
CPU, ``torch.set_num_threads(2)``: Adam steps on random N x 3 x size x size batches with the
training loss (BCE + soft-IoU; Fusion+GAN adds its critic step), one warm-up step, then ``--steps``
timed steps. samples/s = batch x steps / seconds.

Metrics: every finished training run under ``--runs`` (a folder with ``spec.json``) is scored by
``edge-ls evaluate --split val`` (the dev split of ``training/configs/real_split.json``), i.e. exported
to ONNX and run through ONNX Runtime like the runtime does, next to the bundled ``edge-nano`` and
``edge-lite`` when present. The machine's load average is recorded: the cores are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edge_ls.report import peak_rss_mb  # one VmHWM reader for the runtime and the bench

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
DATASETS = [SHARED / "data" / "real" / "cas_hokkaido", SHARED / "data" / "real" / "bijie"]
SPLIT_FILE = REPO / "training" / "configs" / "real_split.json"
MODELS = (
    "edge_lite",
    "cascade_triage",
    "cascade_refiner",
    "vgg16",
    "resnet50",
    "densenet201",
    "inceptionv3",
    "fusion",
    "fusion_gan",
)
#: Batch per model (the big ones would swap at 256 px with 8).
BATCH = {"fusion": 2, "fusion_gan": 2, "densenet201": 4, "inceptionv3": 4}


def measure(name: str, size: int, steps: int) -> dict[str, Any]:
    """One model's training steps in this (fresh) process."""
    import torch

    from edge_ls.training import losses
    from edge_ls.training.networks import build_discriminator, build_model, count_parameters

    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch = BATCH.get(name, 8)
    model = build_model(name).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    critic = build_discriminator(3) if name == "fusion_gan" else None
    d_opt = torch.optim.Adam(critic.parameters(), lr=4e-4) if critic is not None else None
    x = torch.randn(batch, 3, size, size)
    y = (torch.rand(batch, 1, size, size) > 0.9).float()

    def step() -> None:
        if critic is not None:
            with torch.no_grad():
                fake = torch.sigmoid(model(x))
            d_loss, _ = losses.critic_loss(critic, x, y, fake)
            d_opt.zero_grad()
            d_loss.backward()
            d_opt.step()
        out = model(x)
        loss = losses.segmentation_loss(out, y)
        if critic is not None:
            loss = loss + 0.05 * losses.generator_adversarial_loss(critic, x, torch.sigmoid(out))
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    return {
        "model": name,
        "size": size,
        "batch": batch,
        "steps": steps,
        "params": count_parameters(model),
        "samples_per_s": round(batch * steps / seconds, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def speed_rows(models: list[str], sizes: list[int], steps: int, timeout: float) -> list[dict[str, Any]]:
    rows = []
    for name in models:
        for size in sizes:
            cmd = [sys.executable, __file__, "--measure", name, str(size), "--steps", str(steps)]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"model": name, "size": size, "error": f"timed out after {timeout:.0f}s"})
                continue
            if done.returncode != 0:
                rows.append({"model": name, "size": size, "error": done.stderr.strip().splitlines()[-1:]})
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(
                f"  speed {name:16s} {size:4d}px {rows[-1]['samples_per_s']:8.2f} samples/s "
                f"{rows[-1]['peak_rss_mb']:8.0f} MB",
                file=sys.stderr,
                flush=True,
            )
    return rows


def metric_rows(runs: Path, split: str) -> list[dict[str, Any]]:
    """``edge-ls evaluate --json`` of every finished run and of the bundled tiers."""
    targets: list[tuple[str, str]] = [("edge-nano", "edge-nano")]
    if (REPO / "edge_ls" / "models" / "edge-lite.onnx").is_file():
        targets.append(("edge-lite (bundled)", str(REPO / "edge_ls" / "models" / "edge-lite.onnx")))
    if runs.is_dir():
        targets += [(p.name, str(p)) for p in sorted(runs.iterdir()) if (p / "spec.json").is_file()]
    rows = []
    for label, model in targets:
        cmd = [
            sys.executable,
            "-m",
            "edge_ls",
            "evaluate",
            "--model",
            model,
            *map(str, DATASETS),
            "--split",
            split,
            "--split-file",
            str(SPLIT_FILE),
            "--json",
            "--threads",
            "2",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            rows.append({"model": label, "error": (done.stderr.strip().splitlines() or ["?"])[-1]})
            continue
        result = json.loads(done.stdout)
        rows.append(
            {
                "model": label,
                "source": model,
                **{
                    k: result[k]
                    for k in (
                        "f1",
                        "iou",
                        "precision",
                        "recall",
                        "accuracy",
                        "mcc",
                        "auc",
                        "ece",
                        "pixels",
                        "tiles",
                    )
                },
            }
        )
        print(
            f"  {split} {label:24s} f1 {result['f1']:.3f} iou {result['iou']:.3f}",
            file=sys.stderr,
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per (model, size) subprocess")
    parser.add_argument("--runs", type=Path, default=REPO / "runs", help="training run folders to score")
    parser.add_argument("--split", default="val", help="split scored for the metrics (dev = val)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-metrics", action="store_true")
    parser.add_argument("--measure", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], int(args.measure[1]), args.steps)))
        return 0
    started = time.time()
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "threads": 2,
    }
    if not args.skip_speed:
        result["speed"] = speed_rows(
            args.models.split(","), [int(s) for s in args.sizes.split(",")], args.steps, args.timeout
        )
    if not args.skip_metrics:
        result["metrics_split"] = args.split
        result["metrics"] = metric_rows(args.runs, args.split)
    result["load_average_end"] = os.getloadavg()
    result["seconds"] = round(time.time() - started, 1)
    text = json.dumps(result, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
