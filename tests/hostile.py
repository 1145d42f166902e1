"""Tiny real ONNX models for hostile tests: a 1x1 convolution whose bias sets the output (NaN, inf),
and models whose input or output does not fit the edge-ls contract (N x C x H x W in, N x 1 x H x W
out). Each is a few hundred bytes and runs in ONNX Runtime like any exported tier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge_ls.artifact import ModelSpec, write_spec

BANDS = ("red", "green", "blue")


def tiny_spec(name: str = "tiny", tile: int = 64) -> ModelSpec:
    """A valid spec for a 3-band 8-bit model with ``tile``-px tiles."""
    return ModelSpec(
        name=name,
        tier="test",
        bands=BANDS,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        input_range="8bit",
        gsd_m=10.0,
        tile_size=tile,
        overlap=0.25,
        activation="logits",
        threshold=0.5,
    )


def conv_model(
    path: Path,
    *,
    bias: float = 0.0,
    in_channels: int = 3,
    out_channels: int = 1,
    stride: int = 1,
    weight: float = 1.0,
    spec: ModelSpec | None = None,
    metadata: str | None = None,
) -> Path:
    """A 1x1 convolution (``weight`` on every band, plus ``bias``): bias NaN makes a NaN-emitting
    model; ``in_channels`` != 3, ``out_channels`` != 1 or ``stride`` 2 break the shape contract.
    ``metadata``: raw text stored under the edge-ls key instead of ``spec`` ("" stores none)."""
    w = np.full((out_channels, in_channels, 1, 1), weight, dtype=np.float32)
    b = np.full((out_channels,), bias, dtype=np.float32)
    node = helper.make_node("Conv", ["image", "w", "b"], ["out"], strides=[stride, stride])
    graph = helper.make_graph(
        [node],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", in_channels, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", out_channels, "oh", "ow"])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is None:
        write_spec(model, spec or tiny_spec(path.stem))
    elif metadata:
        entry = model.metadata_props.add()
        entry.key, entry.value = "edge_ls", metadata
    onnx.save(model, path)
    return path


def tiny_raster(
    path: Path,
    size: int = 96,
    *,
    count: int = 3,
    dtype: str = "uint8",
    crs: str | None = "EPSG:32633",
    origin: tuple[float, float] = (500000.0, 4000000.0),
    res: float = 10.0,
    fill: np.ndarray | None = None,
) -> Path:
    """A small GeoTIFF with varied content (or ``fill``), georeferenced unless ``crs`` is None."""
    import rasterio
    from rasterio.transform import from_origin

    if fill is None:
        rng = np.random.default_rng(0)
        fill = rng.integers(20, 230, size=(count, size, size)).astype(dtype)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": count,
        "dtype": dtype,
    }
    if crs is not None:
        profile.update(crs=crs, transform=from_origin(origin[0], origin[1], res, res))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(fill)
    return path
