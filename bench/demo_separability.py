"""Can anything tell the demo scene's landslide points from its other points? An upper bound.

The demo target (README: at least 0.6 of landslide-point pixels detected, at most 0.1 of
non-landslide-point pixels flagged) assumes the points are visible in the image. This measures how
separable the two point classes are from the scene's own pixels, with no model trained elsewhere:

* per-feature AUC (each band, NDVI, brightness, local mean / standard deviation at 3 and 9 px);
* a logistic-regression "oracle" fitted on the demo's own points (all four bands, NIR included,
  which no edge-ls model sees), scored out of fold with spatial blocks (128 px) so neighbouring pixels
  of one landslide never sit on both sides: its AUC and its hit rate at a 0.1 false-alarm rate;
* for each model given with ``--probability NAME=PATH`` (a ``probability.tif`` from ``edge-ls
  detect`` on the scene), the AUC of its probability and the best hit rate any threshold reaches at a
  0.1 false-alarm rate.

If even the oracle, which cheats by learning on the test points, stays far from 0.6 hits at 0.1 false
alarms, the target is out of reach of pixel evidence at 10 m, whatever the model.

Run from the repository root:

    python bench/demo_separability.py --probability edge-lite=OUT/probability.tif \
        --json bench/results/demo-separability-<date>.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import uniform_filter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from demo_points import LABELS, LANDSLIDE, OTHER, SCENE, label_grid

BLOCK = 128
FOLDS = 5
FALSE_ALARM = 0.1


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Mann-Whitney AUC: the chance a landslide pixel scores above a non-landslide one."""
    scores = np.concatenate([pos, neg])
    ranks = np.empty(len(scores))
    order = np.argsort(scores, kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    # average ranks of ties
    _, inv, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / counts)[inv]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def hit_at_false_alarm(pos: np.ndarray, neg: np.ndarray, rate: float = FALSE_ALARM) -> float:
    """Share of landslide pixels above the threshold that flags ``rate`` of the others."""
    threshold = np.quantile(neg, 1.0 - rate)
    return float((pos > threshold).mean())


def features(scene: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pixel features from the four bands (red, green, blue, NIR)."""
    x = scene.astype(np.float64)
    red, green, blue, nir = x
    ndvi = (nir - red) / (nir + red + 1e-6)
    bright = (red + green + blue) / 3
    out = {"red": red, "green": green, "blue": blue, "nir": nir, "ndvi": ndvi, "brightness": bright}
    for size in (3, 9):
        for name, band in (("brightness", bright), ("ndvi", ndvi)):
            mean = uniform_filter(band, size)
            var = uniform_filter(band * band, size) - mean * mean
            out[f"{name}_mean{size}"] = mean
            out[f"{name}_std{size}"] = np.sqrt(np.maximum(var, 0))
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, steps: int = 2000, l2: float = 1e-3) -> np.ndarray:
    """Plain gradient-descent logistic regression (standardised inputs, bias last)."""
    w = np.zeros(x.shape[1])
    lr = 0.5
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / len(y) + l2 * np.r_[w[:-1], 0]
        w -= lr * grad
    return w


def oracle(feats: dict[str, np.ndarray], grid: np.ndarray) -> tuple[float, float]:
    """Out-of-fold logistic regression on the points, spatial blocks as folds."""
    rows, cols = np.nonzero((grid == LANDSLIDE) | (grid == OTHER))
    y = (grid[rows, cols] == LANDSLIDE).astype(np.float64)
    x = np.stack([f[rows, cols] for f in feats.values()], 1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    x = np.c_[x, x**2, np.ones(len(x))]
    blocks = (rows // BLOCK) * 1000 + cols // BLOCK
    rng = np.random.default_rng(0)
    uniq = np.unique(blocks)
    fold_of = dict(zip(uniq, rng.permutation(len(uniq)) % FOLDS, strict=True))
    fold = np.array([fold_of[b] for b in blocks])
    score = np.empty(len(y))
    for k in range(FOLDS):
        train = fold != k
        w = fit_logistic(x[train], y[train])
        score[~train] = x[~train] @ w
    pos, neg = score[y == 1], score[y == 0]
    return auc(pos, neg), hit_at_false_alarm(pos, neg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--probability", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import rasterio

    with rasterio.open(SCENE) as src:
        scene = src.read()
    grid = label_grid(SCENE, LABELS)
    pos_mask, neg_mask = grid == LANDSLIDE, grid == OTHER
    feats = features(scene)
    result: dict[str, Any] = {
        "scene": SCENE.name,
        "landslide_pixels": int(pos_mask.sum()),
        "other_pixels": int(neg_mask.sum()),
        "false_alarm_rate": FALSE_ALARM,
        "feature_auc": {k: round(auc(v[pos_mask], v[neg_mask]), 3) for k, v in feats.items()},
    }
    o_auc, o_hit = oracle(feats, grid)
    result["oracle"] = {"auc": round(o_auc, 3), "hit_at_false_alarm": round(o_hit, 3)}
    models = {}
    for item in args.probability:
        name, _, path = item.partition("=")
        with rasterio.open(path) as src:
            raw = src.read(1, masked=True).astype(np.float64)
            prob = (raw * src.scales[0] + src.offsets[0]).filled(np.nan)
        if prob.shape != grid.shape:
            raise SystemExit(f"{path}: shape {prob.shape} is not the scene's {grid.shape}")
        p, n = prob[pos_mask], prob[neg_mask]
        p, n = p[np.isfinite(p)], n[np.isfinite(n)]
        models[name] = {"auc": round(auc(p, n), 3), "hit_at_false_alarm": round(hit_at_false_alarm(p, n), 3)}
    result["models"] = models
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
