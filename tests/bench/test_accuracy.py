"""The accuracy ladder, the colour-index baseline and the demo-scene check run end to end on real data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bench import accuracy, demo_points
from edge_ls.export import colour_index

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def excess_red(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("baseline") / "excess-red.onnx"
    assert colour_index.main(["--out", str(out)]) == 0
    return out


def test_colour_index_is_fitted_on_train_and_decides_at_t(excess_red: Path) -> None:
    from edge_ls.artifact import read_spec

    prov = read_spec(excess_red).provenance
    assert prov["split"].startswith("train of") and 0.0 < prov["t"] < 1.0 and prov["k"] > 1
    session = ort.InferenceSession(str(excess_red), providers=["CPUExecutionProvider"])
    rgb = np.random.default_rng(0).random((1, 3, 8, 8), dtype=np.float32)
    prob = session.run(None, {"image": rgb})[0][0, 0]
    index = 1.4 * rgb[0, 0] - rgb[0, 1]
    assert np.array_equal(prob >= 0.5, index >= prov["t"] - 1e-6) or np.allclose(
        (prob >= 0.5).mean(), (index >= prov["t"]).mean(), atol=0.02
    )


def test_ladder_scores_models_and_a_cascade_per_dataset(excess_red: Path, tmp_path: Path) -> None:
    out = tmp_path / "ladder.json"
    code = accuracy.main(
        [
            "--datasets",
            "l4s_rgb",
            "--model",
            f"excess-red={excess_red}",
            "--model",
            "edge-nano=edge-nano",
            "--cascade",
            f"casc=edge-nano,{excess_red}",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert result["tiles"] == {"l4s_rgb": 199}  # the dataset's own test folder
    rows = result["models"]
    for label in ("excess-red", "edge-nano", "casc"):
        assert 0.0 <= rows[label]["pooled"]["f1"] <= 1.0 and "ece" in rows[label]["l4s_rgb"]
    assert rows["excess-red"]["l4s_rgb"] == {**rows["excess-red"]["l4s_rgb"]}
    # the pooled row of one dataset is that dataset
    assert rows["edge-nano"]["pooled"]["f1"] == rows["edge-nano"]["l4s_rgb"]["f1"]
    assert 0.0 <= rows["casc"]["refined_share"] <= 1.0


def test_demo_points_counts_hits_and_false_alarms(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    assert demo_points.main(["--model", "edge-nano", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["models"]["edge-nano"]
    assert row["landslide_px"] > 0 and row["other_px"] > 0
    assert 0.0 <= row["hit_rate"] <= 1.0 and 0.0 <= row["false_alarm_rate"] <= 1.0
