"""INTERIM stand-ins for datasets/splits/metrics while those modules are being written.

Used by :mod:`edge_ls.training.tileset` only when ``edge_ls.training.datasets`` / ``metrics`` cannot
be imported; delete once they land. Numpy only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg")


def read_folder_pairs(root: str) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(id, group, image CHW float32 in [0, 1], mask HW uint8) of ``images/*`` + ``masks/<stem>.png``."""
    import cv2

    out = []
    base = Path(root)
    for img_path in sorted((base / "images").iterdir()):
        if img_path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        mask_path = base / "masks" / f"{img_path.stem}.png"
        img = cv2.imread(str(img_path), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        if img is None or mask is None or mask.shape != img.shape[:2]:
            continue
        img = np.moveaxis(img[..., ::-1], -1, 0).astype(np.float32) / 255.0
        stem = int(img_path.stem) if img_path.stem.isdigit() else 0
        out.append(
            (f"{base.name}/{img_path.stem}", f"{base.name}/{stem // 40}", img, (mask > 0).astype(np.uint8))
        )
    return out


def grouped_split(ids: list[str], groups: list[str], seed: int = 0) -> dict[str, list[str]]:
    """Groups shuffled by a hash, then filled into 70/15/15 by tile count."""
    uniq = sorted(set(groups), key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    total = len(ids)
    split: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for g in uniq:
        members = [i for i, gg in zip(ids, groups, strict=True) if gg == g]
        if len(split["val"]) < 0.15 * total:
            split["val"] += members
        elif len(split["test"]) < 0.15 * total:
            split["test"] += members
        else:
            split["train"] += members
    return split


def save_split(split: dict[str, list[str]], path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(split, indent=1, sort_keys=True))


def load_split(path: str) -> dict[str, list[str]]:
    return json.loads(Path(path).read_text())


class PixelMetrics:
    """Confusion counts over every pixel + AUC/ECE by 1000 probability bins."""

    def __init__(self, threshold: float = 0.5, bins: int = 1000) -> None:
        self.threshold, self.bins = threshold, bins
        self.pos = np.zeros(bins, np.int64)
        self.neg = np.zeros(bins, np.int64)
        self.psum = np.zeros(bins, np.float64)
        self.tp = self.fp = self.tn = self.fn = 0

    def update(self, prob: np.ndarray, mask: np.ndarray) -> None:
        p = prob.ravel().astype(np.float64)
        y = mask.ravel() > 0
        pred = p >= self.threshold
        self.tp += int(np.sum(pred & y))
        self.fp += int(np.sum(pred & ~y))
        self.fn += int(np.sum(~pred & y))
        self.tn += int(np.sum(~pred & ~y))
        b = np.clip((p * self.bins).astype(np.int64), 0, self.bins - 1)
        self.pos += np.bincount(b[y], minlength=self.bins)
        self.neg += np.bincount(b[~y], minlength=self.bins)
        self.psum += np.bincount(b, weights=p, minlength=self.bins)

    def result(self) -> dict[str, float]:
        tp, fp, tn, fn = (float(v) for v in (self.tp, self.fp, self.tn, self.fn))
        n = tp + fp + tn + fn
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = (tp * tn - fp * fn) / den if den else 0.0
        pos, neg = self.pos[::-1], self.neg[::-1]
        tpr = np.concatenate([[0], np.cumsum(pos) / max(pos.sum(), 1)])
        fpr = np.concatenate([[0], np.cumsum(neg) / max(neg.sum(), 1)])
        auc = float(np.trapezoid(tpr, fpr))
        count = self.pos + self.neg
        ece = float(np.sum(np.abs(self.psum - self.pos)) / max(count.sum(), 1))
        return {
            "f1": f1,
            "iou": iou,
            "precision": precision,
            "recall": recall,
            "accuracy": (tp + tn) / n,
            "mcc": float(mcc),
            "auc": auc,
            "ece": ece,
            "pixels": int(n),
        }


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimizing the NLL of sigmoid(z / T), by golden-section search on log T."""
    z = logits.astype(np.float64)
    y = labels.astype(np.float64) > 0

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        return float(np.mean(np.logaddexp(0, s) - y * s))

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))
