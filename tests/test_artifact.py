"""The model-artifact contract: what the runtime accepts and what it refuses, with which message."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import onnx
import pytest

from edge_ls.artifact import METADATA_KEY, ModelSpec, read_spec, write_spec
from edge_ls.errors import ModelError
from edge_ls.models.registry import resolve

NANO = resolve("edge-nano")


def _with_metadata(tmp_path: Path, value: str | None) -> Path:
    model = onnx.load(NANO)
    del model.metadata_props[:]
    if value is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, value
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def _nano_dict() -> dict:
    data = asdict(read_spec(NANO))
    data["bands"], data["mean"], data["std"] = list(data["bands"]), list(data["mean"]), list(data["std"])
    return data


def test_bundled_model_round_trips() -> None:
    spec = read_spec(NANO)
    assert spec.bands == ("red", "green", "blue") and spec.tile_size == 512
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_write_spec_replaces_the_previous_entry(tmp_path: Path) -> None:
    model = onnx.load(NANO)
    spec = read_spec(NANO)
    write_spec(model, ModelSpec(**{**asdict(spec), "threshold": 0.7}))
    assert sum(p.key == METADATA_KEY for p in model.metadata_props) == 1
    onnx.save(model, tmp_path / "m.onnx")
    assert read_spec(tmp_path / "m.onnx").threshold == 0.7


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "no edge-ls metadata"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
    ],
)
def test_missing_or_unreadable_metadata_is_refused(tmp_path: Path, value: str | None, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        read_spec(_with_metadata(tmp_path, value))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bands": ["red", "green", "ultraviolet"]}, "unknown band"),
        ({"mean": [0.0, 0.0]}, "one value per band"),
        ({"std": [1.0, 0.0, 1.0]}, "std values must be positive"),
        ({"input_range": "16bit"}, "input_range"),
        ({"activation": "softmax"}, "activation"),
        ({"threshold": 1.5}, "threshold"),
        ({"overlap": 0.95}, "overlap"),
        ({"temperature": 2.0}, "cannot carry a temperature"),
        ({"gsd_m": -1}, "gsd_m"),
        ({"schema_version": 99}, "schema_version 99"),
        ({"colour": "blue"}, "unknown edge-ls metadata key"),
        ({"tile_size": "big"}, "wrong type"),
    ],
)
def test_invalid_metadata_is_refused_naming_the_problem(tmp_path: Path, change: dict, message: str) -> None:
    data = _nano_dict() | change
    with pytest.raises(ModelError, match=message):
        read_spec(_with_metadata(tmp_path, json.dumps(data)))


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    data = _nano_dict()
    del data["bands"], data["threshold"]
    with pytest.raises(ModelError, match="lacks bands, threshold"):
        read_spec(_with_metadata(tmp_path, json.dumps(data)))


def test_not_an_onnx_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        read_spec(bad)


def test_probabilities_follow_activation_and_temperature() -> None:
    import numpy as np

    spec = read_spec(NANO)  # activation "sigmoid": taken as it is
    raw = np.array([[0.2, 0.9]], dtype=np.float64)
    np.testing.assert_array_equal(spec.probabilities(raw), raw.astype(np.float32))
    logits = ModelSpec(**{**asdict(spec), "activation": "logits", "temperature": 2.0})
    expected = [0.5, 1 / (1 + np.exp(-1.0))]  # sigmoid(z / T) with T = 2
    np.testing.assert_allclose(logits.probabilities(np.array([0.0, 2.0])), expected, rtol=1e-6)


def test_gsd_range_round_trips_and_is_checked() -> None:
    from dataclasses import replace

    from edge_ls.artifact import ModelSpec
    from edge_ls.errors import ModelError

    base = ModelSpec(
        name="m",
        tier="t",
        bands=("red", "green", "blue"),
        mean=(0.5,) * 3,
        std=(0.5,) * 3,
        input_range="8bit",
        gsd_m=3.0,
        tile_size=512,
        overlap=0.2,
        activation="logits",
        threshold=0.5,
    )
    spec = replace(base, gsd_range_m=(0.5, 12.0))
    assert ModelSpec.from_json(spec.to_json()).gsd_range_m == (0.5, 12.0)
    assert ModelSpec.from_json(base.to_json()).gsd_range_m is None  # models trained at one GSD
    with pytest.raises(ModelError, match="gsd_range_m"):
        replace(base, gsd_range_m=(12.0, 0.5))
