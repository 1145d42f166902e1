"""Pixel metrics of a landslide model, aggregated over EVERY pixel of a dataset (numpy only).

Counts are summed over all pixels of all tiles first and the metrics computed once from the totals
(micro-averaging), never averaged per tile: a tile with three landslide pixels does not weigh as
much as one with a hundred thousand. Precision, recall, F1 and IoU are those of the landslide class
(class F1 = 2 IoU / (1 + IoU)). ROC AUC comes from a histogram of probabilities per class (exact when
no two distinct probabilities share a bin, otherwise within one bin width of the truth); ECE is the
reliability gap of the landslide probability over 15 equal-width bins.

Runtime layer, no torch: the evaluator (``edge_ls.evaluate``), the export's accuracy budget and the
trainer all count pixels here, so their figures agree by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

#: Bins of the probability histograms behind ROC AUC.
AUC_BINS = 4096
#: Bins of the expected calibration error (the usual 15 of Guo et al. 2017).
ECE_BINS = 15
#: The scores the export's accuracy budget and the tier benchmarks report, in percentage points.
PERCENT_SCORES = ("f1", "iou", "precision", "recall")


class PixelMetrics:
    """Streaming accumulator: ``update`` per tile (or batch), ``compute`` once at the end.

    ``prob``: landslide probabilities in [0, 1]; ``target``: ground truth (> 0 = landslide);
    ``valid``: pixels to count (nodata and ignore labels excluded), every pixel when None.
    """

    def __init__(self, threshold: float = 0.5, bins: int = AUC_BINS, ece_bins: int = ECE_BINS) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold {threshold} must be in (0, 1)")
        self.threshold = float(threshold)
        self.bins = int(bins)
        self.ece_bins = int(ece_bins)
        self.pos_hist = np.zeros(self.bins, np.int64)
        self.neg_hist = np.zeros(self.bins, np.int64)
        self.ece_count = np.zeros(self.ece_bins, np.int64)
        self.ece_pos = np.zeros(self.ece_bins, np.int64)
        self.ece_prob = np.zeros(self.ece_bins, np.float64)
        self.tp = self.fp = self.tn = self.fn = 0

    def update(self, prob: np.ndarray, target: np.ndarray, valid: np.ndarray | None = None) -> None:
        prob = np.asarray(prob)
        target = np.asarray(target)
        if prob.shape != target.shape:
            prob = np.squeeze(prob)
            target = np.squeeze(target)
        if prob.shape != target.shape:
            raise ValueError(f"probabilities {prob.shape} and target {target.shape} differ in shape")
        p = prob.astype(np.float64, copy=False).ravel()
        y = target.ravel() > 0
        if valid is not None:
            keep = np.asarray(valid, bool).reshape(target.shape).ravel()
            p, y = p[keep], y[keep]
        if p.size == 0:
            return
        if not np.isfinite(p).all():
            raise ValueError("probabilities hold NaN or infinity")
        p = np.clip(p, 0.0, 1.0)
        pred = p >= self.threshold
        tp = int(np.count_nonzero(pred & y))
        fp = int(np.count_nonzero(pred)) - tp
        pos = int(np.count_nonzero(y))
        self.tp += tp
        self.fp += fp
        self.fn += pos - tp
        self.tn += p.size - pos - fp
        b = _bin(p, self.bins)
        self.pos_hist += np.bincount(b[y], minlength=self.bins)
        self.neg_hist += np.bincount(b[~y], minlength=self.bins)
        e = _bin(p, self.ece_bins)
        self.ece_count += np.bincount(e, minlength=self.ece_bins)
        self.ece_pos += np.bincount(e[y], minlength=self.ece_bins)
        self.ece_prob += np.bincount(e, weights=p, minlength=self.ece_bins)

    def merge(self, other: PixelMetrics) -> None:
        """Add another accumulator's counts (e.g. from a worker)."""
        if (other.bins, other.ece_bins, other.threshold) != (self.bins, self.ece_bins, self.threshold):
            raise ValueError("cannot merge accumulators with different bins or thresholds")
        for name in ("pos_hist", "neg_hist", "ece_count", "ece_pos", "ece_prob"):
            getattr(self, name).__iadd__(getattr(other, name))
        self.tp += other.tp
        self.fp += other.fp
        self.tn += other.tn
        self.fn += other.fn

    @property
    def pixels(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    def compute(self) -> dict[str, Any]:
        """Every metric from the totals; a metric whose denominator is 0 is 0.0 and listed in
        ``undefined`` (e.g. recall on data without landslides)."""
        tp, fp, tn, fn = (float(v) for v in (self.tp, self.fp, self.tn, self.fn))
        n = tp + fp + tn + fn
        undefined: list[str] = []

        def ratio(name: str, num: float, den: float) -> float:
            if den == 0:
                undefined.append(name)
                return 0.0
            return num / den

        precision = ratio("precision", tp, tp + fp)
        recall = ratio("recall", tp, tp + fn)
        f1 = ratio("f1", 2 * tp, 2 * tp + fp + fn)
        iou = ratio("iou", tp, tp + fp + fn)
        accuracy = ratio("accuracy", tp + tn, n)
        den = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = ratio("mcc", tp * tn - fp * fn, den)
        auc = histogram_auc(self.pos_hist, self.neg_hist)
        if math.isnan(auc):
            undefined.append("auc")
            auc = 0.0
        ece = float(np.abs(self.ece_prob - self.ece_pos).sum() / n) if n else 0.0
        if not n:
            undefined.append("ece")
        rows = np.array([[tn, fp], [fn, tp]], np.float64)
        sums = rows.sum(axis=1, keepdims=True)
        normalized = np.divide(rows, sums, out=np.zeros_like(rows), where=sums > 0)
        return {
            "accuracy": accuracy,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "iou": iou,
            "mcc": mcc,
            "auc": auc,
            "ece": ece,
            "pixels": int(n),
            "positives": int(tp + fn),
            "threshold": self.threshold,
            "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
            # rows = truth (background, landslide), columns = prediction; each row sums to 1
            "confusion_normalized": normalized.tolist(),
            "undefined": undefined,
        }

    #: The name the trainer's interim stand-in used.
    result = compute


def _bin(p: np.ndarray, bins: int) -> np.ndarray:
    """Bin index of probabilities in [0, 1]: ``floor(p * bins)``, with p = 1 in the last bin."""
    return np.minimum((p * bins).astype(np.int64), bins - 1)


def histogram_auc(pos_hist: np.ndarray, neg_hist: np.ndarray) -> float:
    """ROC AUC from per-bin counts of positives and negatives (NaN with only one class).

    The Mann-Whitney form: P(score of a positive > score of a negative), ties (same bin) counted
    as one half. Equal to the trapezoidal area under the ROC curve through the bin thresholds.
    """
    n_pos, n_neg = float(pos_hist.sum()), float(neg_hist.sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    neg_below = np.cumsum(neg_hist) - neg_hist  # negatives in strictly lower bins
    wins = float(np.dot(pos_hist.astype(np.float64), neg_below + 0.5 * neg_hist))
    return wins / (n_pos * n_neg)


def exact_auc(prob: np.ndarray, target: np.ndarray) -> float:
    """Brute-force ROC AUC by ranking (ties averaged): the reference the histogram is tested against."""
    p = np.asarray(prob, np.float64).ravel()
    y = np.asarray(target).ravel() > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(p.size, np.float64)
    sorted_p = p[order]
    start = 0
    while start < p.size:  # average ranks over runs of equal values
        end = start
        while end + 1 < p.size and sorted_p[end + 1] == sorted_p[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_temperature(
    logits: np.ndarray, targets: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0), iters: int = 80
) -> float:
    """The temperature T minimizing the mean NLL of ``sigmoid(logits / T)`` (fit on validation pixels).

    The NLL is convex in 1/T, hence unimodal in log T: a golden-section search on log T finds the
    minimum without scipy. Feed a sample of validation pixels (a few million at most); ``targets`` > 0
    is a landslide. Returns a value inside ``bounds``.
    """
    z = np.asarray(logits, np.float64).ravel()
    y = (np.asarray(targets).ravel() > 0).astype(np.float64)
    if z.size != y.size:
        raise ValueError(f"{z.size} logits for {y.size} targets")
    if z.size == 0:
        raise ValueError("no logits to fit a temperature on")
    finite = np.isfinite(z)
    z, y = z[finite], y[finite]

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))


def percent_scores(result: Mapping[str, Any]) -> dict[str, float]:
    """F1, IoU, precision and recall of :meth:`PixelMetrics.compute` in percentage points.

    The accuracy budget is stated in F1 points ("loses at most 1 point"), so the export reports these.
    """
    return {k: 100 * float(result[k]) for k in PERCENT_SCORES}
