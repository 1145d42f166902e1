"""The accuracy ladder: every tier and baseline on each dataset's test split and pooled.

Run from the repository root (the committed command behind training/README.md's ladder):

    python bench/accuracy.py --json bench/results/accuracy-<date>.json --md bench/results/accuracy-<date>.md \
        --model excess-red=runs/baselines/excess-red.onnx --model edge-nano=edge-nano \
        --model edge-lite=edge-lite --model edge-lite:int8=edge-lite:int8 ...

Each cell scores the ONNX artifact the runtime's way (``edge_ls.evaluate.OnnxScorer``: the model's
own band scaling, normalization, temperature and stored threshold; whole tiles). Metrics are
aggregated over every pixel of the split (micro), per dataset and pooled over the three. Also per
dataset: the best threshold on the *test* split and the F1 lost by using the stored one instead
(reported, never used to choose anything), and params / GFLOPs of a 512-px tile from the graph.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
DATASETS = ("cas_hokkaido", "bijie", "l4s_rgb")
SPLIT_FILE = REPO / "training" / "configs" / "split_all.json"
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.01), 2)


def load_split(split: str, split_file: Path, roots: list[Path]) -> dict[str, list[tuple]]:
    """Tiles of ``split`` per dataset: (image C x H x W in [0, 1], mask, valid)."""
    from edge_ls.training import datasets, splits

    ds = datasets.open_datasets([str(r) for r in roots])
    wanted = set(splits.load_splits(split_file)[split])
    out: dict[str, list[tuple]] = {}
    for i, sid in enumerate(ds.ids):
        if sid in wanted:
            sample = ds.try_get(i)
            if sample is not None:
                unit = np.ascontiguousarray(np.moveaxis(sample.image, -1, 0))
                out.setdefault(sid.split("/", 1)[0], []).append((unit, sample.mask, sample.valid))
    return out


def f1_curve(prob: np.ndarray, truth: np.ndarray) -> np.ndarray:
    out = np.zeros(len(THRESHOLDS))
    for k, t in enumerate(THRESHOLDS):
        pred = prob >= t
        denom = float(pred.sum() + truth.sum())
        out[k] = 2 * float(np.sum(pred & truth)) / denom if denom else 0.0
    return out


def aligned(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Probabilities moved so that ``threshold`` sits at 0.5 (same decisions, one threshold for all)."""
    p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
    z = np.log(p / (1 - p)) - np.log(threshold / (1 - threshold))
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


class Cascade:
    """Edge-Cascade's rule (``CascadeRunner``'s): a tile whose triage probability reaches ``roi``
    anywhere (``area`` 0) or on at least ``area`` of its pixels is decided by the refiner (its
    probabilities and threshold); every other tile keeps the triage probability, capped just below
    the refiner's threshold (the triage ruled it out). With ``window`` > 0 the rule is applied per
    window and the refiner runs on the hot windows' crops (``edge_ls.backends.cascade.window_crops``)."""

    def __init__(
        self, triage, refiner, roi: float, area: float = 0.0, threshold: float = 0.5, window: int = 0
    ) -> None:
        self.triage, self.refiner, self.roi, self.area = triage, refiner, roi, area
        self.threshold, self.window = threshold, window
        self.cap = float(np.nextafter(np.float32(threshold), np.float32(0.0)))
        self.tiles = self.refined = 0
        self.pixels = self.refined_pixels = 0

    def bind_dataset(self, name: str) -> None:
        getattr(self.refiner, "bind_dataset", lambda _: None)(name)

    def probability(self, unit: np.ndarray) -> tuple[np.ndarray, float]:
        from edge_ls.backends.cascade import hot_windows, window_crops

        p, _ = self.triage.probability(unit)
        self.tiles += 1
        self.pixels += p.size
        capped = np.minimum(p, np.float32(self.cap))
        # the runtime's rule: the whole tile is one window when self.window is 0
        if not hot_windows(p, self.roi, self.area, self.window or max(p.shape)).any():
            return capped, self.threshold
        crops = window_crops(p, self.roi, self.area, self.window) if self.window else None
        self.refined += 1
        if crops is None:
            self.refined_pixels += p.size
            return self.refiner.probability(unit)
        out = capped.copy()  # capped below the refiner's threshold: decided alike with its pixels
        for (ys, xs), (cy, cx, size) in crops:
            q, _ = self.refiner.probability(unit[:, cy : cy + size, cx : cx + size])
            out[ys, xs] = q[ys.start - cy : ys.stop - cy, xs.start - cx : xs.stop - cx]
            self.refined_pixels += size * size
        return out, self.threshold


def score_model(model, tiles: dict[str, list[tuple]]) -> dict[str, Any]:
    """Per-dataset and pooled metrics of one model (``probability(unit) -> (p, threshold)``).

    F1/IoU/precision/recall come from each model's own decision threshold; ECE and AUC from the
    calibrated probabilities themselves.
    """
    from edge_ls.metrics import PixelMetrics

    row: dict[str, Any] = {}
    pooled, pooled_cal = PixelMetrics(0.5), PixelMetrics(0.5)
    started = time.monotonic()
    for name, pairs in tiles.items():
        getattr(model, "bind_dataset", lambda _: None)(name)  # the dataset's GSD, as a scene's
        acc, cal = PixelMetrics(0.5), PixelMetrics(0.5)
        sampled_p, sampled_y = [], []
        for unit, mask, valid in pairs:
            prob, threshold = model.probability(unit)
            decided = aligned(prob, threshold)
            for a, c in ((acc, cal), (pooled, pooled_cal)):
                a.update(decided, mask, valid)
                c.update(prob, mask, valid)
            sampled_p.append(decided[::3, ::3].ravel())
            sampled_y.append(mask[::3, ::3].ravel() > 0)
        m, mc = acc.compute(), cal.compute()
        curve = f1_curve(np.concatenate(sampled_p), np.concatenate(sampled_y))
        k_stored = int(np.argmin(np.abs(THRESHOLDS - 0.5)))
        best = int(np.argmax(curve))
        row[name] = {
            **{k: round(float(m[k]), 4) for k in ("f1", "iou", "precision", "recall")},
            **{k: round(float(mc[k]), 4) for k in ("ece", "auc")},
            "tiles": len(pairs),
            "threshold_gap_points": round(100 * float(curve[best] - curve[k_stored]), 2),
        }
    m, mc = pooled.compute(), pooled_cal.compute()
    row["pooled"] = {
        **{k: round(float(m[k]), 4) for k in ("f1", "iou", "precision", "recall")},
        **{k: round(float(mc[k]), 4) for k in ("ece", "auc")},
    }
    row["seconds"] = round(time.monotonic() - started, 1)
    return row


class TTA:
    """A model averaged over the 8 flips and quarter turns of each tile (D4 test-time augmentation)
    and over ``scales``: the runtime's ``mean_probability`` itself, so the ladder scores what runs."""

    def __init__(self, model: Single, scales: tuple[float, ...] = (1.0,)) -> None:
        self.model, self.spec, self.scales = model, model.spec, scales
        self.used_scales = scales

    def bind_dataset(self, name: str) -> None:
        """The runtime's rule per scene: only scales that keep the dataset's GSD in the trained range."""
        from edge_ls.backends.tta import usable_scales
        from edge_ls.training.datasets.base import KNOWN_GSD_M

        self.used_scales = usable_scales(self.scales, KNOWN_GSD_M.get(name), self.spec.gsd_range_m)

    def probability(self, unit: np.ndarray) -> tuple[np.ndarray, float]:
        # The runtime's averaging (edge_ls.backends.tta.mean_probability), through the scorer.
        prob = self.model.scorer.probability(unit, views=8, scales=self.used_scales)
        return prob, self.spec.threshold


class Single:
    """One ONNX model as the runtime runs it, with its cost read off the graph."""

    def __init__(self, path: Path, threads: int) -> None:
        from edge_ls.evaluate import OnnxScorer

        self.path = path
        self.scorer = OnnxScorer.open(path, threads)
        self.spec = self.scorer.spec

    def probability(self, unit: np.ndarray) -> tuple[np.ndarray, float]:
        return self.scorer.probability(unit), self.spec.threshold

    def describe(self) -> dict[str, Any]:
        import onnx

        from edge_ls.export.flops import graph_cost

        cost = graph_cost(onnx.load(str(self.path)), 512)
        return {
            "path": str(self.path),
            "model": self.spec.name,
            "tier": self.spec.tier,
            "precision": self.spec.precision,
            "threshold": self.spec.threshold,
            "temperature": self.spec.temperature,
            "params": cost.params,
            "gflops_512": round(cost.gflops, 2),
            "size_mb": round(self.path.stat().st_size / 1e6, 2),
        }


def to_markdown(rows: dict[str, dict[str, Any]], names: list[str]) -> str:
    head = "| model | precision | params | GFLOPs/512px | " + " | ".join(
        f"{d} F1 / IoU / ECE" for d in [*names, "pooled"]
    )
    lines = [head + " |", "|" + "---|" * (4 + len(names) + 1)]
    for label, r in rows.items():
        cells = [
            f"{r[d]['f1']:.3f} / {r[d]['iou']:.3f} / {r[d]['ece']:.3f}" if d in r else "-"
            for d in [*names, "pooled"]
        ]
        lines.append(
            f"| {label} | {r['precision']} | {r['params'] / 1e6:.2f} M | {r['gflops_512']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", default=[], help="LABEL=NAME|PATH (repeatable)")
    parser.add_argument(
        "--cascade",
        action="append",
        help="LABEL=TRIAGE,REFINER[,tta]: Edge-Cascade's rule on whole tiles (tta: refiner over D4)",
    )
    parser.add_argument("--tta", action="append", help="LABEL=NAME|PATH averaged over D4 (8 passes)")
    parser.add_argument("--roi", type=float, default=0.3, help="cascade ROI threshold (the profile's: 0.3)")
    parser.add_argument(
        "--roi-area", type=float, default=0.0, help="share of a tile that must reach --roi (0: any pixel)"
    )
    parser.add_argument(
        "--scales",
        default="1",
        help="comma-separated scales the --tta rows and a cascade's tta refiner also run at (e.g. 1,0.5)",
    )
    parser.add_argument(
        "--roi-window",
        type=int,
        default=0,
        help="apply the ROI rule and refine per window of this side (0: tiles)",
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--split-file", type=Path, default=SPLIT_FILE)
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    args = parser.parse_args(argv)

    from edge_ls.models.registry import resolve

    roots = [SHARED / "data" / "real" / d for d in args.datasets]
    tiles = load_split(args.split, args.split_file, roots)
    rows: dict[str, dict[str, Any]] = {}
    scales = tuple(float(v) for v in args.scales.split(","))
    # the cost of one view at every scale, in units of one view at scale 1
    scale_cost = sum(v * v for v in scales)
    for item in args.model:
        label, _, target = item.partition("=")
        single = Single(Path(resolve(target or label)), args.threads)
        rows[label] = {**single.describe(), **score_model(single, tiles)}
        print(f"{label}: pooled F1 {rows[label]['pooled']['f1']:.3f}", file=sys.stderr, flush=True)
    for item in args.tta or []:
        label, _, target = item.partition("=")
        single = Single(Path(resolve(target or label)), args.threads)
        info = single.describe()
        cost = 8 * scale_cost * info["gflops_512"]
        rows[label] = {**info, **score_model(TTA(single, scales), tiles), "gflops_512": round(cost, 2)}
        rows[label].update(tta=8, scales=list(scales))
        print(f"{label}: pooled F1 {rows[label]['pooled']['f1']:.3f}", file=sys.stderr, flush=True)
    for item in args.cascade or []:
        label, _, target = item.partition("=")
        triage_ref, refiner_ref, *extra = target.split(",")
        triage = Single(Path(resolve(triage_ref)), args.threads)
        refiner = Single(Path(resolve(refiner_ref)), args.threads)
        tta = extra == ["tta"]
        cascade = Cascade(
            triage,
            TTA(refiner, scales) if tta else refiner,
            args.roi,
            args.roi_area,
            refiner.spec.threshold,
            args.roi_window,
        )
        t, r = triage.describe(), refiner.describe()
        scores = score_model(cascade, tiles)
        share = cascade.refined / max(1, cascade.tiles)
        pixel_share = cascade.refined_pixels / max(1, cascade.pixels)
        rows[label] = {
            **scores,
            "model": f"{t['model']} -> {r['model']}",
            "tier": "edge-cascade",
            "precision": f"{t['precision']}/{r['precision']}",
            "roi": args.roi,
            "roi_area": args.roi_area,
            "roi_window": args.roi_window,
            "scales": list(scales) if tta else [1.0],
            "refined_share": round(share, 4),
            "refined_pixel_share": round(pixel_share, 4),
            # cost per tile: triage always, refiner on the refined share
            "params": t["params"] + r["params"],
            "gflops_512": round(
                t["gflops_512"] + pixel_share * r["gflops_512"] * (8 * scale_cost if tta else 1), 2
            ),
            "parts": {"triage": t, "refiner": r},
        }
        print(f"{label}: pooled F1 {rows[label]['pooled']['f1']:.3f}", file=sys.stderr, flush=True)
    result = {
        "command": "python bench/accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "split": args.split,
        "split_file": str(
            args.split_file.relative_to(REPO) if args.split_file.is_absolute() else args.split_file
        ),
        "tiles": {d: len(v) for d, v in tiles.items()},
        "models": rows,
    }
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    if args.md:
        args.md.write_text(to_markdown(rows, list(tiles)))
    print(to_markdown(rows, list(tiles)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
