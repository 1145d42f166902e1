"""The bundled tier profiles load, agree with each other, and bad files fail naming key, value and file."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from edge_ls.errors import ConfigError
from edge_ls.profiles import (
    KNOWN_BACKENDS,
    PROFILES_DIR,
    Profile,
    ShapeRange,
    list_profiles,
    load_all,
    load_profile,
    parse_profile,
)

TIERS = [
    "edge-cascade",
    "edge-cascade-nano",
    "edge-lite",
    "edge-nano",
    "fusion",
    "fusion-gan",
    "fusion-gan-large",
]


def _base() -> dict:
    return tomllib.loads((PROFILES_DIR / "edge-lite.toml").read_text())


def _write(tmp_path: Path, text: str, name: str = "custom.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_tier_has_a_profile_named_after_it():
    assert list_profiles() == TIERS
    for profile in load_all():
        assert isinstance(profile, Profile)
        assert profile.source is not None and profile.source.stem == profile.tier
        assert profile.backends and set(profile.backends) <= set(KNOWN_BACKENDS)
        assert profile.tile in profile.tensorrt.tile and profile.batch in profile.tensorrt.batch
        assert profile.tile % profile.tile_multiple == 0
        assert profile.accuracy_budget_f1 == 1.0


def test_table7_columns_per_tier():
    lite, cascade = load_profile("edge-lite"), load_profile("edge-cascade")
    assert lite.primary_model == "edge-lite:int8" and lite.precision == "int8" and not lite.is_cascade
    assert cascade.is_cascade
    assert dict(cascade.models) == {"triage": "edge-lite:int8", "refiner": "edge-lite"}
    assert cascade.primary_model == "edge-lite:int8" and cascade.roi_threshold == 0.3 and cascade.views == 8
    large = load_profile("fusion-gan-large")
    assert large.tile == 1024 and large.uncertainty and large.tensorrt.hardware_compatibility == "ampere+"
    assert load_profile("edge-nano").primary_model == "edge-nano"
    assert load_profile("fusion-gan").stride == round(512 * 0.8)


def test_load_by_path_and_name_agree(tmp_path):
    copy = _write(tmp_path, (PROFILES_DIR / "fusion.toml").read_text())
    by_path, by_name = load_profile(copy), load_profile("fusion")
    assert by_path.models == by_name.models and by_path.tensorrt == by_name.tensorrt
    assert load_profile(str(copy)).tier == "fusion"


def test_unknown_profile_name_suggests_and_lists():
    with pytest.raises(ConfigError, match=r"profile 'edge-lit' \(did you mean 'edge-lite'\?\).*fusion-gan"):
        load_profile("edge-lit")
    with pytest.raises(ConfigError, match=r"profile file not found: nowhere/x\.toml"):
        load_profile("nowhere/x.toml")


def test_unknown_key_is_named_with_the_file_and_a_suggestion(tmp_path):
    path = _write(tmp_path, (PROFILES_DIR / "edge-lite.toml").read_text().replace("overlap =", "overlapp ="))
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    text = str(err.value)
    assert text.startswith("custom.toml: ")
    assert "overlapp: unknown key (did you mean 'overlap'?)" in text
    assert "overlap: is required" in text


def test_unknown_nested_key(tmp_path):
    text = (PROFILES_DIR / "edge-lite.toml").read_text().replace("workspace_mb", "workspace")
    with pytest.raises(ConfigError, match=r"tensorrt\.workspace: unknown key \(did you mean 'workspace_mb'"):
        load_profile(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"tile": "512"}, "tile: must be an integer, got '512'"),
        ({"tile": 500}, "tile: must be a multiple of 32"),
        ({"batch": 0}, "batch: must be at least 1, got 0"),
        ({"batch": True}, "batch: must be an integer, got true"),
        ({"overlap": 0.95}, r"overlap: must be in \[0, 0.9\), got 0.95"),
        ({"overlap": -0.1}, r"overlap: must be in \[0, 0.9\), got -0.1"),
        ({"precision": "int4"}, "precision: must be one of fp32, fp16, int8, mixed, got 'int4'"),
        ({"backends": ["tensorrt", "openvino"]}, r"backends\[1\]: must be one of .*got 'openvino'"),
        ({"backends": ["tensorrt", "tensorrt"]}, r"backends\[1\]: 'tensorrt' is listed twice"),
        ({"backends": []}, "backends: must list at least one backend"),
        ({"accuracy_budget_f1": 0}, r"accuracy_budget_f1: must be F1 points in \(0, 100\]"),
        ({"thresholds": {"decision": 1.5}}, "thresholds.decision: must be between 0 and 1"),
        ({"thresholds": {"roi": 0.3}}, "thresholds.roi: only applies to a cascade"),
        ({"thresholds": {"roi_area": 0.01}}, "thresholds.roi_area: only applies to a cascade"),
        ({"thresholds": {"roi_neighbours": False}}, "thresholds.roi_neighbours: only applies to a cascade"),
        ({"thresholds": {"roi_window": 128}}, "thresholds.roi_window: only applies to a cascade"),
        ({"scales": [1.0, 3.0]}, r"scales: must list distinct scales in \[0.25, 2\]"),
        ({"scales": [1.0, 1.0]}, r"scales: must list distinct scales in \[0.25, 2\]"),
        ({"scales": []}, r"scales: must list distinct scales"),
        ({"scales": 0.5}, r"scales: must be a list, got 0.5"),
        ({"models": {}}, "models: must name at least one model"),
        ({"models": {"primary": "a", "triage": "b", "refiner": "c"}}, "give either 'primary' or a cascade"),
        ({"models": {"triage": "b"}}, "a cascade needs both 'triage' and 'refiner'"),
        ({"outputs": {"uncertainty": "yes"}}, "outputs.uncertainty: must be true or false, got 'yes'"),
    ],
)
def test_bad_values_name_key_and_value(edit, message):
    data = _base()
    data.update(edit)
    with pytest.raises(ConfigError, match=message):
        parse_profile(data, source="edge-lite.toml")


def test_missing_required_keys_are_all_listed():
    data = _base()
    del data["tile"], data["backends"]
    with pytest.raises(ConfigError, match=r"tile: is required; .*backends: is required"):
        parse_profile(data)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"roi_area": 1.0}, r"thresholds\.roi_area: must be a share of the tile in \[0, 1\), got 1.0"),
        ({"roi_area": -0.01}, r"thresholds\.roi_area: must be a share of the tile in \[0, 1\)"),
        ({"roi_neighbours": "no"}, r"thresholds\.roi_neighbours: must be true or false, got 'no'"),
        ({"roi_window": 100}, r"thresholds\.roi_window: must be 0 \(whole tiles\) or a multiple of 32 below"),
        ({"roi_window": 512}, r"thresholds\.roi_window: must be 0 \(whole tiles\) or a multiple of 32 below"),
        (
            {"roi_window": 128, "roi_neighbours": True},
            r"thresholds\.roi_window: refines windows of a tile; set",
        ),
    ],
)
def test_bad_cascade_roi_rules_name_key_and_value(edit, message):
    data = tomllib.loads((PROFILES_DIR / "edge-cascade.toml").read_text())
    data["thresholds"].update(edit)
    with pytest.raises(ConfigError, match=message):
        parse_profile(data)


def test_a_window_rule_reaches_the_deployment_and_the_run_key():
    from edge_ls.deployment import deploy
    from edge_ls.runs import key_parts

    data = tomllib.loads((PROFILES_DIR / "edge-cascade.toml").read_text())
    data["thresholds"].update(roi_window=128, roi_neighbours=False)
    d = deploy(parse_profile(data))
    assert d.roi_window == 128 and "refined in 128-px windows" in d.describe()
    assert key_parts(d)["roi_window"] == 128 and "roi_window" not in key_parts(deploy("edge-cascade"))


def test_scales_reach_the_runner_the_description_and_the_run_key():
    from edge_ls.backends.select import make_runner
    from edge_ls.backends.tta import AveragingRunner
    from edge_ls.deployment import deploy
    from edge_ls.runs import key_parts

    data = tomllib.loads((PROFILES_DIR / "edge-lite.toml").read_text())
    data.update(scales=[1, 0.5], models={"primary": "edge-lite"})
    d = deploy(parse_profile(data))
    assert d.options.scales == (1.0, 0.5) and "model averaged at scales 1, 0.5" in d.describe()
    runner = make_runner(d)
    assert isinstance(runner, AveragingRunner) and (runner.views, runner.scales) == (1, (1.0, 0.5))
    assert key_parts(d)["scales"] == [1.0, 0.5] and "scales" not in key_parts(deploy("edge-lite"))


def test_cascade_without_roi_threshold_fails():
    data = tomllib.loads((PROFILES_DIR / "edge-cascade.toml").read_text())
    del data["thresholds"]["roi"]
    with pytest.raises(ConfigError, match=r"thresholds\.roi: is required for a cascade"):
        parse_profile(data)


@pytest.mark.parametrize(
    ("trt", "message"),
    [
        ({"batch": {"min": 4, "opt": 2, "max": 8}}, "batch: needs min <= opt <= max, got min 4, opt 2"),
        ({"tile": {"min": 256, "opt": 2048, "max": 1024}}, "tensorrt.tile: needs min <= opt <= max"),
        ({"tile": {"min": 250, "opt": 512, "max": 1024}}, r"tensorrt\.tile\.min: must be a multiple of 32"),
        ({"tile": {"min": 640, "opt": 640, "max": 1024}}, "must include the profile's tile 512"),
        ({"batch": {"min": 2, "opt": 2, "max": 4}}, "must include the profile's batch 1"),
        ({"batch": {"min": 1, "max": 8}}, r"tensorrt\.batch\.opt: is required"),
        ({"batch": {"min": 0, "opt": 1, "max": 8}}, r"tensorrt\.batch\.min: must be at least 1"),
        ({"hardware_compatibility": "turing+"}, "hardware_compatibility: must be one of none, ampere"),
        ({"workspace_mb": 1}, "tensorrt.workspace_mb: must be at least 16 MB"),
    ],
)
def test_bad_tensorrt_ranges(trt, message):
    data = _base()
    data["tensorrt"] = {**data["tensorrt"], **trt}
    with pytest.raises(ConfigError, match=message):
        parse_profile(data)


def test_tensorrt_table_is_optional_and_defaults_to_static_shapes():
    data = _base()
    del data["tensorrt"]
    profile = parse_profile(data)
    assert profile.tensorrt.tile == ShapeRange(512, 512, 512)
    assert profile.tensorrt.batch == ShapeRange(1, 1, 1)
    assert not profile.tensorrt.version_compatible and profile.tensorrt.hardware_compatibility == "none"


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"broken.toml is not valid TOML"):
        load_profile(_write(tmp_path, "tier = 'x'\ntile = [", name="broken.toml"))


def test_shape_range_checks_its_order():
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        ShapeRange(2, 1, 4)
    assert 3 in ShapeRange(1, 2, 4) and 5 not in ShapeRange(1, 2, 4)


def test_tiers_that_are_built_not_shipped_say_how_to_build_them():
    """Every tier that is not bundled names the command that builds it and how long it took, with the
    source of that figure; the bundled ones need none."""
    for name in ("fusion", "fusion-gan", "fusion-gan-large"):
        p = load_profile(name)
        assert "edge-ls export" in p.install_command and f"--tier {name} " in p.install_command
        assert "min" in p.install_took and ("issue" in p.install_took or "README" in p.install_took)
    for bundled in ("edge-lite", "edge-nano", "edge-cascade"):
        assert load_profile(bundled).install_command == "" and load_profile(bundled).install_took == ""
