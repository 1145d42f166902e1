"""``edge-ls profiles``: the tier table, one profile in full, JSON, and the auto pick on this machine."""

from __future__ import annotations

import json

from edge_ls.cli import main
from edge_ls.hardware import detect_hardware, pick_profile
from edge_ls.profiles import list_profiles


def test_table_lists_every_tier_and_the_auto_pick(capsys):
    assert main(["profiles"]) == 0
    out = capsys.readouterr().out
    header, *rows = out.split("\n\n")[0].splitlines()
    assert header.split() == [
        "tier",
        "models",
        "tile",
        "batch",
        "overlap",
        "precision",
        "backends",
        "installed",
    ]
    assert [r.split()[0] for r in rows] == list_profiles()
    nano = next(r for r in rows if r.startswith("edge-nano"))
    assert nano.split()[-1] == "yes" and "onnxruntime-cpu" in nano
    assert "triage=edge-lite:int8, refiner=edge-lite" in out
    auto, reason = pick_profile(detect_hardware())
    assert f"auto here: {auto}: {reason}" in out  # here (no GPU): edge-lite, "no NVIDIA GPU found (...)"


def test_one_profile_in_full(capsys):
    assert main(["profiles", "edge-cascade"]) == 0
    out = capsys.readouterr().out
    assert "roi 0.3" in out and "batch 1/1/8, tile 256/512/1024" in out


def test_json(capsys):
    assert main(["profiles", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["tier"] for p in data["profiles"]] == list_profiles()
    hw = detect_hardware()
    assert data["auto"]["profile"] == pick_profile(hw)[0] and data["auto"]["hardware"] == hw.describe()
    large = next(p for p in data["profiles"] if p["tier"] == "fusion-gan-large")
    assert large["tensorrt"]["tile"] == [512, 1024, 2048] and large["outputs"]["uncertainty"] is True


def test_unknown_profile_exits_2(capsys):
    assert main(["profiles", "edge-lit"]) == 2
    assert "did you mean 'edge-lite'" in capsys.readouterr().err
