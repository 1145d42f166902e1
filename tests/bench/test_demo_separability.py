"""The demo-scene separability bound: its statistics and a run on the real scene."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bench import demo_separability as sep


def test_auc_counts_pairs_and_ties() -> None:
    assert sep.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert sep.auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert sep.auc(np.array([1.0, 1.0]), np.array([1.0])) == 0.5
    rng = np.random.default_rng(0)
    assert abs(sep.auc(rng.normal(size=4000), rng.normal(size=4000)) - 0.5) < 0.03


def test_hit_at_false_alarm_uses_the_others_quantile() -> None:
    neg = np.arange(100, dtype=float)  # 10% of them above 89.1
    assert sep.hit_at_false_alarm(np.array([95.0, 50.0, 99.0, 10.0]), neg) == 0.5


def test_oracle_separates_what_is_separable() -> None:
    grid = np.zeros((256, 256), np.uint16)
    grid[::4, ::4] = sep.OTHER
    grid[2::4, 2::4] = sep.LANDSLIDE
    band = np.where(grid == sep.LANDSLIDE, 10.0, 0.0) + np.random.default_rng(1).normal(size=grid.shape)
    auc, hit = sep.oracle({"b": band, "c": -band}, grid)
    assert auc > 0.99 and hit > 0.95


@pytest.mark.skipif(not sep.LABELS.exists(), reason="needs ../shared/data/real/sentinel2_chattogram")
def test_runs_on_the_demo_scene(tmp_path: Path) -> None:
    out = tmp_path / "sep.json"
    assert sep.main(["--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["landslide_pixels"] > 1000 and result["other_pixels"] > 1000
    assert 0.0 <= result["oracle"]["hit_at_false_alarm"] <= 1.0
    assert set(result["feature_auc"]) >= {"red", "ndvi", "brightness_std9"}
