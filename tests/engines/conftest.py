"""ONNX files an engine would be built from: the bundled edge-nano, and (with torch) a small real
torchvision-backbone segmenter exported here in FP32, FP16 (casts) and INT8 QDQ (symmetric, and the
asymmetric UINT8 form TensorRT refuses), calibrated on real CAS Hokkaido tiles.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_ls.models.registry import BUNDLED_DIR

CALIBRATION_TILES = 4
CALIBRATION_SIZE = 128


@pytest.fixture(scope="session")
def nano_onnx() -> Path:
    path = BUNDLED_DIR / "edge-nano.onnx"
    assert path.is_file(), "edge-nano.onnx is bundled with the runtime"
    return path


@pytest.fixture(scope="session")
def real_batch(real_data: Path) -> np.ndarray:
    """Real RGB tiles (CAS Hokkaido), centre-cropped, in [0, 1], NCHW float32."""
    import cv2

    images = sorted((real_data / "cas_hokkaido" / "images").iterdir())[:CALIBRATION_TILES]
    tiles = []
    for path in images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        h, w = bgr.shape[:2]
        y, x = (h - CALIBRATION_SIZE) // 2, (w - CALIBRATION_SIZE) // 2
        rgb = bgr[y : y + CALIBRATION_SIZE, x : x + CALIBRATION_SIZE, ::-1]
        tiles.append(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)
    return np.stack(tiles)


@pytest.fixture(scope="session")
def small_fp32_onnx(tmp_path_factory) -> Path:
    """MobileNetV3-small stem (torchvision, random weights) + 1x1 head + bilinear upsampling."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from torch import nn

    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = torchvision.models.mobilenet_v3_small().features[:4]  # stride 8, 24 channels
            self.head = nn.Conv2d(24, 1, 1)

        def forward(self, x):
            y = self.head(self.encoder(x))
            return nn.functional.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False)

    torch.manual_seed(0)
    model = Segmenter().eval()
    path = tmp_path_factory.mktemp("onnx") / "small-fp32.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter (no onnxscript here) warns it is legacy
        warnings.simplefilter("ignore", DeprecationWarning)
        _export(torch, model, path)
    return path


def _export(torch, model, path: Path) -> None:
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, 128, 128),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={name: {0: "batch", 2: "height", 3: "width"} for name in ("image", "logits")},
    )


def _quantize(src: Path, dst: Path, batch: np.ndarray, symmetric: bool) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{"image": batch[i : i + 1]} for i in range(len(batch))])

        def get_next(self):
            return next(self._items, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        # TensorRT's form: symmetric, zero points 0, biases left in float (no INT32 DequantizeLinear).
        extra_options={
            "ActivationSymmetric": symmetric,
            "WeightSymmetric": True,
            "QuantizeBias": not symmetric,
        },
    )
    return dst


@pytest.fixture(scope="session")
def small_int8_onnx(small_fp32_onnx: Path, real_batch: np.ndarray) -> Path:
    """Symmetric INT8 QDQ (zero points 0): the form TensorRT takes."""
    return _quantize(small_fp32_onnx, small_fp32_onnx.with_name("small-int8.onnx"), real_batch, True)


@pytest.fixture(scope="session")
def small_uint8_onnx(small_fp32_onnx: Path, real_batch: np.ndarray) -> Path:
    """ONNX Runtime's default asymmetric UINT8 activations: runs on the CPU, refused by TensorRT."""
    return _quantize(small_fp32_onnx, small_fp32_onnx.with_name("small-uint8.onnx"), real_batch, False)


@pytest.fixture(scope="session")
def small_fp16_onnx(small_fp32_onnx: Path) -> Path:
    """FP16 weights and compute with float32 I/O (casts at the edges)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(small_fp32_onnx)), keep_io_types=True)
    path = small_fp32_onnx.with_name("small-fp16.onnx")
    onnx.save(model, str(path))
    return path
