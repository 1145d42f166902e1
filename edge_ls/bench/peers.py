"""Real peers run on the same model and scene as edge-ls: GeoDeep (``pip install 'edge-ls[peers]'``).

GeoDeep (https://github.com/uav4geo/GeoDeep, AGPL-3.0) runs ONNX segmentation models whose metadata
says how (``model_type`` "Segmentor", ``resolution`` in cm/px, ``tiles_overlap`` in percent,
``seg_thresh``, ``class_names``, ``seg_small_segment``): it feeds uint8 RGB tiles as [0, 1] floats,
thresholds each class channel at ``seg_thresh`` and takes the argmax. :func:`geodeep_model` wraps an
edge-ls model in that contract without changing its network: the spec's standardization in front,
the calibrated sigmoid and a two-class output behind (background = the decision threshold, landslide =
the probability), so a pixel is a landslide in GeoDeep exactly when its calibrated probability exceeds
the decision threshold, as in edge-ls.
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec, read_spec
from edge_ls.errors import ConfigError, MissingExtraError

#: Peers ``edge-ls bench`` knows, and the module each needs.
PEERS = {"geodeep": "geodeep"}


def require_peer(name: str) -> None:
    """A peer that is unknown or not installed: one clear line naming the extra."""
    if name not in PEERS:
        raise ConfigError(f"unknown peer '{name}': known peers are {', '.join(PEERS)}")
    if importlib.util.find_spec(PEERS[name]) is None or importlib.util.find_spec("onnx") is None:
        raise MissingExtraError(name, "peers", f"the {name} reference rows of 'edge-ls bench'")


def geodeep_model(
    model_path: Path,
    out_path: Path,
    *,
    tile: int,
    overlap: float,
    gsd_m: float,
    threshold: float | None = None,
) -> Path:
    """Write ``model_path`` wrapped in GeoDeep's metadata contract to ``out_path`` (see the module doc).

    ``gsd_m``: the scene's GSD (GeoDeep would downsample a scene finer than the model's
    ``resolution``; equal means it reads the scene as it is, as edge-ls does).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec: ModelSpec = read_spec(model_path)
    threshold = spec.threshold if threshold is None else threshold
    model = onnx.load(str(model_path))
    graph = model.graph
    inner_in, inner_out = graph.input[0].name, graph.output[0].name
    c = len(spec.bands)
    mean = np.asarray(spec.mean, np.float32).reshape(1, c, 1, 1)
    std = np.asarray(spec.std, np.float32).reshape(1, c, 1, 1)
    pre = [
        numpy_helper.from_array(mean, "gd_mean"),
        numpy_helper.from_array(std, "gd_std"),
        numpy_helper.from_array(np.asarray(1.0 / spec.temperature, np.float32), "gd_inv_t"),
        numpy_helper.from_array(np.asarray(0.0, np.float32), "gd_zero"),
        numpy_helper.from_array(np.asarray(threshold, np.float32), "gd_threshold"),
    ]
    graph.initializer.extend(pre)
    nodes = [
        helper.make_node("Sub", ["gd_input", "gd_mean"], ["gd_centred"]),
        helper.make_node("Div", ["gd_centred", "gd_std"], [inner_in]),
    ]
    body = list(graph.node)
    if spec.activation == "logits":
        tail = [
            helper.make_node("Mul", [inner_out, "gd_inv_t"], ["gd_scaled"]),
            helper.make_node("Sigmoid", ["gd_scaled"], ["gd_prob"]),
        ]
    else:
        tail = [helper.make_node("Identity", [inner_out], ["gd_prob"])]
    tail += [
        # Background channel = the decision threshold everywhere: GeoDeep zeroes channels under
        # seg_thresh (= the threshold) and takes the argmax, so class 1 wins exactly when p > threshold
        # (1 - p would move the decision to 0.5).
        helper.make_node("Mul", ["gd_prob", "gd_zero"], ["gd_nothing"]),
        helper.make_node("Add", ["gd_nothing", "gd_threshold"], ["gd_background"]),
        helper.make_node("Concat", ["gd_background", "gd_prob"], ["gd_classes"], axis=1),
    ]
    del graph.node[:]
    graph.node.extend([*nodes, *body, *tail])
    new_input = helper.make_tensor_value_info("gd_input", TensorProto.FLOAT, [1, c, tile, tile])
    new_output = helper.make_tensor_value_info("gd_classes", TensorProto.FLOAT, [1, 2, tile, tile])
    del graph.input[:]
    graph.input.extend([new_input])
    del graph.output[:]
    graph.output.extend([new_output])
    meta = {
        "model_type": json.dumps("Segmentor"),
        "resolution": str(gsd_m * 100.0),
        "tiles_overlap": str(overlap * 100.0),
        "seg_thresh": str(threshold),
        "class_names": json.dumps({"0": "background", "1": "landslide"}),
        # GeoDeep sieves segments under (2 s)^2 px; s = 1 (4 px) is nearest edge-ls's 9-px minimum.
        "seg_small_segment": "1",
    }
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))
    return out_path


def run_geodeep(scene: Path, wrapped: Path, out_dir: Path, threads: int | None = None) -> dict[str, Any]:
    """GeoDeep's own ``run()`` on the scene: its mask (``output_type='raw'``), then its polygons
    (``mask_to_geojson``) written to disk; timed together as its whole run. Returns the mask too."""
    import geodeep
    import rasterio
    from geodeep.segmentation import mask_to_geojson
    from geodeep.slidingwindow import generate_for_size

    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mask = geodeep.run(str(scene), str(wrapped), output_type="raw", max_threads=threads)
    with rasterio.open(scene) as raster:
        _, config = _config(wrapped)
        polygons = mask_to_geojson(raster, mask, {**config, "classes": [1]})
        windows = len(
            generate_for_size(
                raster.width, raster.height, config["tiles_size"], config["tiles_overlap"] / 100.0, clip=False
            )
        )
    (out_dir / "geodeep.geojson").write_text(polygons)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "tiles": windows, "mask": mask, "version": _version()}


def _config(wrapped: Path) -> tuple[Any, dict[str, Any]]:
    from geodeep.inference import create_session

    return create_session(str(wrapped))


def _version() -> str:
    from importlib.metadata import version

    return version("geodeep")
