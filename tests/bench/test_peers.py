"""GeoDeep as a peer: our model wrapped in its metadata contract, run through its own run()."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import rasterio

from edge_ls.bench.peers import geodeep_model, require_peer, run_geodeep
from edge_ls.deployment import LoadedModel, deploy
from edge_ls.errors import ConfigError, MissingExtraError
from edge_ls.io.labelled import load_tiles
from edge_ls.pipeline import detect

pytest.importorskip("geodeep")


def test_the_wrapped_model_decides_exactly_where_ours_does(real_data: Path, tmp_path: Path) -> None:
    from geodeep.inference import create_session
    from geodeep.segmentation import execute_segmentation

    lite = LoadedModel.load("edge-lite")
    wrapped = geodeep_model(lite.path, tmp_path / "w.onnx", tile=512, overlap=0.2, gsd_m=1.0)
    session, config = create_session(str(wrapped))
    assert config["model_type"] == "Segmentor" and config["tiles_size"] == 512
    assert config["tiles_overlap"] == 20.0 and config["resolution"] == 100.0
    x = load_tiles(real_data / "bijie", lite.spec, limit=1)
    rgb = np.clip(np.round((x * 0.502 + 0.498) * 255), 0, 255).astype(np.uint8)[0]  # back to 8-bit
    theirs = execute_segmentation(rgb, session, config)[0]
    from edge_ls.backends.onnxrt import OnnxRuntimeRunner

    with OnnxRuntimeRunner(lite.path) as runner:
        x8 = ((rgb.astype(np.float32) / 255.0 - 0.498) / 0.502)[None]
        ours = lite.spec.probabilities(runner.infer(x8)[:, 0])[0] >= lite.spec.threshold
    assert (theirs.astype(bool) == ours).mean() > 0.999  # only pixels within float error of the threshold


def test_geodeep_runs_our_model_on_the_same_scene(tmp_path: Path, labelled_scene: tuple[Path, Path]) -> None:
    scene, _ = labelled_scene
    nano = LoadedModel.load("edge-nano")
    wrapped = geodeep_model(nano.path, tmp_path / "n.onnx", tile=512, overlap=0.2, gsd_m=1.0)
    result = run_geodeep(scene, wrapped, tmp_path / "gd")
    assert result["tiles"] == 9 and (tmp_path / "gd" / "geodeep.geojson").stat().st_size > 100
    detect(scene, deploy(model="edge-nano"), tmp_path / "ours")
    with rasterio.open(tmp_path / "ours" / "mask.tif") as m:
        ours = m.read(1)
    agree = (result["mask"] == ours).mean()
    assert agree > 0.9  # same per-pixel model; GeoDeep adds a 5-px median filter and a sieve


def test_an_unknown_or_missing_peer_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="unknown peer 'deepness'"):
        require_peer("deepness")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "geodeep" else real(n, *a))
    with pytest.raises(MissingExtraError, match=r"edge-ls\[peers\]"):
        require_peer("geodeep")
