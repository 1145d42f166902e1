"""Pixel metrics: hand-computed values, streaming == one shot, AUC vs brute force, ECE, temperature."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ls.metrics import (
    PixelMetrics,
    exact_auc,
    fit_temperature,
    histogram_auc,
    percent_scores,
)

PROB = np.array([0.9, 0.8, 0.3, 0.2, 0.6, 0.1])
TRUTH = np.array([1, 1, 1, 0, 0, 0])


def test_hand_computed_six_pixels() -> None:
    m = PixelMetrics()
    m.update(PROB, TRUTH)
    r = m.compute()
    # tp = 2 (0.9, 0.8), fn = 1 (0.3), fp = 1 (0.6), tn = 2 (0.2, 0.1)
    assert r["confusion"] == {"tn": 2, "fp": 1, "fn": 1, "tp": 2}
    assert r["precision"] == pytest.approx(2 / 3) and r["recall"] == pytest.approx(2 / 3)
    assert r["f1"] == pytest.approx(2 / 3) and r["iou"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(2 * r["iou"] / (1 + r["iou"]))
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["mcc"] == pytest.approx((2 * 2 - 1 * 1) / 9)
    # positives beat negatives in 8 of 9 pairs (0.3 loses to 0.6)
    assert r["auc"] == pytest.approx(8 / 9)
    # every pixel alone in its 1/15-wide bin: ECE = mean |p - y|
    assert r["ece"] == pytest.approx((0.1 + 0.2 + 0.7 + 0.2 + 0.6 + 0.1) / 6)
    np.testing.assert_allclose(r["confusion_normalized"], [[2 / 3, 1 / 3], [1 / 3, 2 / 3]])
    assert r["pixels"] == 6 and r["positives"] == 3 and r["undefined"] == []


def test_threshold_and_valid_pixels() -> None:
    m = PixelMetrics(threshold=0.25)
    valid = np.array([1, 1, 1, 1, 0, 0], bool)  # drop the 0.6 false positive and a true negative
    m.update(PROB, TRUTH, valid)
    r = m.compute()
    assert r["pixels"] == 4
    assert r["confusion"] == {"tn": 1, "fp": 0, "fn": 0, "tp": 3}
    assert r["recall"] == 1.0 and r["precision"] == 1.0


def test_streaming_equals_one_shot_over_every_pixel() -> None:
    rng = np.random.default_rng(1)
    probs = [rng.random((17, 23)) for _ in range(5)]
    masks = [(rng.random((17, 23)) < p).astype(np.uint8) for p in probs]
    streamed = PixelMetrics()
    for p, y in zip(probs, masks, strict=True):
        streamed.update(p, y)
    whole = PixelMetrics()
    whole.update(np.concatenate([p.ravel() for p in probs]), np.concatenate([y.ravel() for y in masks]))
    _same(streamed.compute(), whole.compute())
    merged = PixelMetrics()
    for p, y in zip(probs, masks, strict=True):
        part = PixelMetrics()
        part.update(p, y)
        merged.merge(part)
    _same(merged.compute(), whole.compute())


def _same(a: dict, b: dict) -> None:
    """Equal results: counts exactly, float sums (ECE) up to rounding order."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k] == pytest.approx(b[k], rel=1e-12) if k == "ece" else a[k] == b[k], k


def test_micro_average_weighs_pixels_not_tiles() -> None:
    m = PixelMetrics()
    m.update(np.ones(100), np.ones(100))  # big tile, perfect
    m.update(np.ones(1), np.zeros(1))  # tiny tile, one false positive
    assert m.compute()["precision"] == pytest.approx(100 / 101)  # per-tile mean would say 0.5


def test_auc_matches_brute_force_exactly_when_bins_separate_values() -> None:
    rng = np.random.default_rng(2)
    bins = 1000
    p = (rng.integers(0, bins, 5000) + 0.5) / bins  # bin centres, with many ties
    y = rng.random(5000) < p
    m = PixelMetrics(bins=bins)
    m.update(p, y)
    assert m.compute()["auc"] == pytest.approx(exact_auc(p, y), abs=1e-12)


def test_auc_of_continuous_scores_within_bin_resolution() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(2, 5, 20000)
    y = rng.random(20000) < p
    m = PixelMetrics()  # 4096 bins
    m.update(p, y)
    assert m.compute()["auc"] == pytest.approx(exact_auc(p, y), abs=2e-4)


def test_exact_auc_reference_by_pair_counting() -> None:
    rng = np.random.default_rng(4)
    p = np.round(rng.random(300), 2)
    y = rng.random(300) < 0.4
    pos, neg = p[y], p[~y]
    diff = pos[:, None] - neg[None, :]
    want = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert exact_auc(p, y) == pytest.approx(want, abs=1e-12)
    hist = lambda v: np.bincount(np.round(v * 100).astype(int), minlength=101)  # noqa: E731
    assert histogram_auc(hist(pos), hist(neg)) == pytest.approx(want, abs=1e-12)


def test_undefined_metrics_are_zero_and_named() -> None:
    m = PixelMetrics()
    m.update(np.full(10, 0.2), np.zeros(10))
    r = m.compute()
    assert r["accuracy"] == 1.0
    assert {"precision", "recall", "f1", "iou", "mcc", "auc"} <= set(r["undefined"])
    assert r["f1"] == 0.0 and r["auc"] == 0.0


def test_ece_of_a_calibrated_model_is_small_and_of_an_overconfident_one_large() -> None:
    rng = np.random.default_rng(5)
    p = rng.random(200000)
    y = rng.random(200000) < p
    good = PixelMetrics()
    good.update(p, y)
    bad = PixelMetrics()
    bad.update(np.where(p > 0.5, 1.0, 0.0), y)
    assert good.compute()["ece"] < 0.01
    assert bad.compute()["ece"] == pytest.approx(0.25, abs=0.01)  # |1 - E[p | p > .5]| = .25


def test_fit_temperature_recovers_the_true_one_and_the_nll_minimum() -> None:
    rng = np.random.default_rng(6)
    true_t = 2.5
    z = rng.normal(0, 4, 50000)  # overconfident logits
    y = rng.random(z.size) < 1 / (1 + np.exp(-z / true_t))
    t = fit_temperature(z, y)
    assert t == pytest.approx(true_t, rel=0.1)
    grid = np.exp(np.linspace(np.log(1.0), np.log(6.0), 401))
    nll = [np.mean(np.logaddexp(0, z / g) - y * (z / g)) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(nll))], rel=0.01)
    assert fit_temperature(z / true_t, y) == pytest.approx(1.0, rel=0.1)


def test_bad_inputs_are_refused() -> None:
    m = PixelMetrics()
    with pytest.raises(ValueError, match="shape"):
        m.update(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="NaN"):
        m.update(np.array([np.nan]), np.array([1]))
    m.update(np.zeros((1, 1, 4, 4)), np.zeros((4, 4)))  # N x 1 x H x W output against H x W mask
    assert m.pixels == 16


def test_percent_scores_of_pooled_counts() -> None:
    """The export's units: F1/IoU/precision/recall in points, F1 = 2 IoU / (1 + IoU), 0 when undefined."""
    m = PixelMetrics()
    m.update(
        np.r_[np.ones(30), np.ones(10), np.zeros(20), np.zeros(940)],
        np.r_[np.ones(30), np.zeros(10), np.ones(20), np.zeros(940)],
    )
    s = percent_scores(m.compute())
    assert s["iou"] == pytest.approx(50.0) and s["f1"] == pytest.approx(100 * 2 * 30 / 90)
    assert s["f1"] == pytest.approx(200 * (s["iou"] / 100) / (1 + s["iou"] / 100))
    empty = PixelMetrics()
    empty.update(np.zeros(100), np.zeros(100))
    assert percent_scores(empty.compute())["f1"] == 0.0
