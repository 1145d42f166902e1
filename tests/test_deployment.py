"""deploy(): one typed path from a profile (or auto, or a model) to a run, for every caller."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edge_ls.deployment import ROLES, DetectOptions, deploy
from edge_ls.errors import ConfigError, ModelError
from edge_ls.pipeline import detect
from edge_ls.profiles import load_profile, parse_profile

REPO = Path(__file__).resolve().parents[1]


def test_a_profile_becomes_models_options_backends_and_thresholds() -> None:
    d = deploy("edge-lite")
    assert set(d.models) == {"primary"} and d.model.name == "edge-lite:int8"
    assert (d.options.tile_size, d.options.batch_size, d.options.overlap) == (512, 1, 0.2)
    assert d.backends == ("tensorrt", "onnxruntime-cuda", "onnxruntime-cpu")
    assert d.options.profile is d.profile and d.roi_threshold is None and d.outputs == ()
    assert d.threshold == d.model.spec.threshold  # no decision override in the profile


def test_explicit_overrides_win_over_the_profile_and_none_means_not_given() -> None:
    profile = replace(load_profile("edge-lite"), batch=4)  # a batch other than DetectOptions' default
    d = deploy(profile, tile_size=256, batch_size=None, threshold=0.4)
    assert (d.options.tile_size, d.options.batch_size, d.threshold) == (256, 4, 0.4)
    with pytest.raises(TypeError, match="no_such_field"):
        deploy("edge-lite", no_such_field=1)


def test_a_cascade_profile_deploys_both_roles_with_its_roi() -> None:
    d = deploy("edge-cascade-nano")
    assert d.is_cascade and set(d.models) == {"triage", "refiner"} <= set(ROLES)
    assert d.model is d.models["refiner"] and d.roi_threshold == 0.3
    assert d.threshold == d.models["refiner"].spec.threshold


def test_a_library_caller_passing_a_profile_gets_its_tile_and_batch(tmp_path: Path, geotiffs: Path) -> None:
    """Before: DetectOptions(profile=...) gave the backends but not the tile or batch."""
    profile = load_profile("edge-nano")
    report = detect(geotiffs / "rasterio" / "RGB.byte.tif", "edge-nano", tmp_path / "o",
                    DetectOptions(profile=profile, tile_size=256))  # fmt: skip
    assert report["tile_size"] == 256 and report["profile"] == "edge-nano"
    d = deploy("edge-nano")
    assert d.options.batch_size == profile.batch == 1


def test_unknown_tier_is_one_line_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'edge-lte' \(did you mean 'edge-lite'\?\)") as e:
        deploy("edge-lte")
    assert "\n" not in str(e.value)


def test_a_profile_naming_a_model_not_installed_says_how_to_build_it() -> None:
    with pytest.raises(ModelError, match=r"model 'fusion:fp16' is not installed: build it with"):
        deploy("fusion")


def _profile(tmp_path: Path, extra: str) -> Path:
    text = (REPO / "profiles" / "edge-cascade-nano.toml").read_text()
    path = tmp_path / "p.toml"
    path.write_text(text.replace("[outputs]\nuncertainty = false", extra))
    return path


def test_roi_above_the_decision_threshold_is_refused(tmp_path: Path) -> None:
    path = _profile(tmp_path, "[outputs]\nuncertainty = false")
    path.write_text(path.read_text().replace("roi = 0.3", "roi = 0.6"))
    with pytest.raises(ConfigError, match=r"thresholds.roi 0.6 is above the decision threshold 0.4"):
        deploy(path)


def test_uncertainty_switch_and_count_reach_the_options(tmp_path: Path) -> None:
    text = (REPO / "profiles" / "edge-nano.toml").read_text()
    path = tmp_path / "u.toml"
    path.write_text(text.replace("uncertainty = false", "uncertainty = true\ntta = 4"))
    d = deploy(path)
    assert d.options.uncertainty_tta == 4 and d.outputs == ("uncertainty.tif",)
    with pytest.raises(ConfigError, match=r"outputs.tta: must be 2..8"):
        parse_profile({**_min(), "outputs": {"uncertainty": True, "tta": 9}})
    with pytest.raises(ConfigError, match="not available for a cascade"):
        deploy(_profile(tmp_path, "[outputs]\nuncertainty = true"))


def _min() -> dict:
    return {"tier": "t", "models": {"primary": "edge-nano"}, "tile": 512, "batch": 1, "overlap": 0.2,
            "precision": "fp32", "backends": ["onnxruntime-cpu"]}  # fmt: skip


def test_a_bare_model_deploys_alone_on_onnx_runtime() -> None:
    d = deploy(model="edge-nano")
    assert d.name == "edge-nano" and d.profile is None and d.backends == ("onnxruntime",)
    assert d.options == DetectOptions()


def test_auto_picks_from_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_ls.hardware import Hardware

    monkeypatch.setattr("edge_ls.hardware.detect_hardware", lambda: Hardware())
    d = deploy("auto")
    assert d.name == "edge-lite" and "--profile auto picked 'edge-lite'" in d.notes[0]
    assert d.expected_skips == ("tensorrt", "onnxruntime-cuda")


@pytest.mark.parametrize(
    ("field", "value", "pattern"),
    [
        ("tile_size", 0, "tile_size"),
        ("tile_size", -64, "tile_size"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", -1, "batch_size"),
        ("readers", 0, "readers"),
        ("streams", 0, "streams"),
        ("queue_depth", 0, "queue_depth"),
        ("nodata", float("1e400"), "nodata"),  # what --nodata 1e400 parses to: inf
        ("overlap", 0.95, "overlap"),
        ("threshold", 1.5, "threshold"),
        ("layers", "int16", "layers"),
        ("views", 0, "views"),
        ("views", 9, "views"),
        ("scales", (1.0, 3.0), r"scales must be a tuple of distinct floats in \[0.25, 2\]"),
        ("scales", (1.0, 1.0), "scales"),
        ("scales", (), "scales"),
        ("scales", (1, 0.5), "tuple of distinct floats"),
    ],
)
def test_invalid_options_are_refused_not_replaced(field: str, value: object, pattern: str) -> None:
    """``--tile-size 0`` used to become the model's tile (``options.tile_size or spec.tile_size``):
    every caller, CLI or library, now gets a ConfigError naming the option instead."""
    with pytest.raises(ConfigError, match=pattern):
        DetectOptions(**{field: value})
    with pytest.raises(ConfigError, match=pattern):
        deploy(model="edge-nano", **{field: value})


def test_valid_edge_values_are_kept() -> None:
    o = DetectOptions(tile_size=32, batch_size=1, readers=1, streams=1, nodata=float("nan"), overlap=0.0)
    assert (o.tile_size, o.batch_size, o.readers, o.streams, o.overlap) == (32, 1, 1, 1, 0.0)
