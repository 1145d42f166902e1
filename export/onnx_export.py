"""PyTorch -> ONNX export with the model-artifact metadata, graph simplification and a parity check.

Why the legacy TorchScript exporter (``dynamo=False``): in torch 2.14 the torch.export-based exporter
needs ``onnxscript``, which the export extra does not pull in; the TorchScript exporter gives clean
opset-17 graphs with symbolic batch/height/width that onnxslim folds further and that
``onnxruntime.quantization.quantize_static`` quantizes without complaint. The parity check runs the
simplified graph under ONNX Runtime exactly as the runtime would (all graph optimizations on), so a
model that exports but computes something else never leaves this function.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_ls.artifact import ModelSpec, write_spec
from edge_ls.backends.onnxrt import open_session
from edge_ls.errors import ConfigError, ModelError, OutputError, first_line

log = logging.getLogger(__name__)

INPUT_NAME = "image"
#: Dimensions the exported graph leaves symbolic, so one file serves every batch and tile size.
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
#: Tiles are cut to a multiple of this for the extra dynamic-shape check (encoders downsample by 32).
SHAPE_MULTIPLE = 32


def output_name(spec: ModelSpec) -> str:
    """``logits`` or ``prob``: the output tensor says what it holds."""
    return "prob" if spec.activation == "sigmoid" else "logits"


def export_onnx(
    model: Any,
    spec: ModelSpec,
    out_path: str | Path,
    sample: np.ndarray | None = None,
    opset: int = 17,
    dynamic: bool = True,
    atol: float = 1e-3,
    *,
    simplify: bool = True,
    rtol: float | None = None,
) -> Path:
    """Export ``model`` (a torch module: N x C x H x W -> N x 1 x H x W) to ``out_path`` and verify it.

    ``sample`` holds real tiles, NCHW float32, already normalized as ``spec`` says; it is the tracing
    input and the parity-check input. Without it a seeded random tile is used and the spec's
    provenance says so (parity on noise proves less than parity on imagery). Raises ModelError when
    ONNX Runtime and PyTorch disagree by more than ``atol + rtol * |output|`` anywhere (``rtol``
    defaults to ``PARITY_RTOL``).
    """
    rtol = PARITY_RTOL if rtol is None else rtol
    import onnx
    import torch

    if opset < 17:
        raise ConfigError(f"opset {opset} is too old: edge-ls exports opset >= 17")
    out = Path(out_path)
    channels = len(spec.bands)
    synthetic = sample is None
    if sample is None:
        size = min(spec.tile_size, 256)
        sample = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    sample = _check_sample(sample, channels)

    model = model.eval()
    example = torch.from_numpy(sample)
    with torch.no_grad():
        reference = _torch_forward(model, example)
    _check_output_shape(reference.shape, sample.shape)

    out_name = output_name(spec)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out.parent}: {exc.strerror}") from None
    axes = {INPUT_NAME: DYNAMIC_AXES, out_name: DYNAMIC_AXES} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer warnings
        torch.onnx.export(
            model,
            (example,),
            str(out),
            opset_version=opset,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[out_name],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    if simplify:
        proto = _simplify(proto)

    shapes = [sample.shape]
    extra = _second_shape(sample) if dynamic else None
    provenance = dict(spec.provenance)
    export_info: dict[str, Any] = {
        "exporter": f"torch {torch.__version__} torch.onnx (TorchScript)",
        "opset": opset,
        "simplified": simplify,
        "dynamic": dynamic,
        "parity": {
            "atol": atol,
            "rtol": rtol,
            "sample": "synthetic noise" if synthetic else "real tiles",
        },
    }
    provenance["export"] = export_info
    final_spec = dataclasses.replace(spec, precision="fp32", provenance=provenance)
    write_spec(proto, final_spec)
    proto.producer_name = "edge-ls"
    onnx.checker.check_model(proto, full_check=False)
    onnx.save(proto, str(out))

    worst = _parity(out, model, sample, reference, atol, rtol)
    if extra is not None:
        shapes.append(extra.shape)
        worst = max(worst, _parity(out, model, extra, None, atol, rtol))
    export_info["parity"].update(max_abs_diff=float(worst), shapes=[list(s) for s in shapes])
    write_spec(proto, dataclasses.replace(final_spec, provenance=provenance))
    onnx.save(proto, str(out))
    log.info("exported %s (parity max |diff| %.2e on %s)", out, worst, shapes)
    return out


def parity_max_diff(onnx_path: str | Path, model: Any, batch: np.ndarray) -> float:
    """Max absolute difference between ONNX Runtime and PyTorch outputs on ``batch``."""
    got, reference = _onnx_and_torch(onnx_path, model, batch)
    return float(np.max(np.abs(got.astype(np.float64) - reference.astype(np.float64))))


def _onnx_and_torch(onnx_path: str | Path, model: Any, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ONNX Runtime output, PyTorch output) on ``batch``; refuses outputs of different shapes."""
    import torch

    with torch.no_grad():
        reference = _torch_forward(model.eval(), torch.from_numpy(np.ascontiguousarray(batch)))
    got = run_onnx(onnx_path, batch)
    if got.shape != reference.shape:
        raise ModelError(
            f"{Path(onnx_path).name}: ONNX output shape {got.shape} != PyTorch {reference.shape} "
            f"for input {batch.shape}: the dynamic axes were not exported"
        )
    return got, reference


def run_onnx(onnx_path: str | Path, batch: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Run a model under ONNX Runtime on CPU the way the runtime does (all graph optimizations)."""
    session = open_session(onnx_path, threads=threads, error="ONNX Runtime cannot run {name}: {reason}")
    try:
        (out,) = session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(batch)})[:1]
    except Exception as exc:  # onnxruntime raises many unrelated types
        raise ModelError(f"ONNX Runtime cannot run {Path(onnx_path).name}: {first_line(exc)}") from None
    return np.asarray(out)


#: Relative part of the parity tolerance (as numpy.allclose): float32 rounding grows with the output's
#: magnitude, so logits in the hundreds (an overconfident model on noise) differ by ~1e-3 for a correct
#: export.
PARITY_RTOL = 1e-5


def _parity(
    path: Path,
    model: Any,
    batch: np.ndarray,
    reference: np.ndarray | None,
    atol: float,
    rtol: float = PARITY_RTOL,
) -> float:
    """Compare and raise loudly past ``atol + rtol * |reference|`` (elementwise); returns the max
    absolute difference."""
    if reference is None:
        got, reference = _onnx_and_torch(path, model, batch)
    else:
        got = run_onnx(path, batch)
        if got.shape != reference.shape:
            raise ModelError(f"{path.name}: ONNX output shape {got.shape} != PyTorch {reference.shape}")
    ref = reference.astype(np.float64)
    err = np.abs(got.astype(np.float64) - ref)
    diff = float(np.max(err))
    if not np.isfinite(diff) or np.any(err > atol + rtol * np.abs(ref)):
        raise ModelError(
            f"{path.name}: ONNX Runtime and PyTorch disagree on input {tuple(batch.shape)}: max |diff| "
            f"{diff:.3g} > atol {atol:g} + rtol {rtol:g} x |output|; the export is wrong "
            "(unsupported op or shape baked in)"
        )
    return diff


def _torch_forward(model: Any, example: Any) -> np.ndarray:
    out = model(example)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if isinstance(out, dict):
        raise ModelError(
            "the model returns a dict: export a module whose forward returns one N x 1 x H x W tensor"
        )
    return out.detach().float().cpu().numpy()


def _check_sample(sample: np.ndarray, channels: int) -> np.ndarray:
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    if sample.ndim != 4 or sample.shape[1] != channels:
        raise ConfigError(
            f"parity sample must be N x {channels} x H x W float32 (one channel per spec band), "
            f"got shape {sample.shape}"
        )
    if not np.all(np.isfinite(sample)):
        raise ConfigError("parity sample holds NaN or inf values")
    return sample


def _check_output_shape(got: Sequence[int], given: Sequence[int]) -> None:
    want = (given[0], 1, given[2], given[3])
    if tuple(got) != want:
        raise ModelError(
            f"the model maps {tuple(given)} to {tuple(got)}; edge-ls models must output N x 1 x H x W {want}"
        )


def _second_shape(sample: np.ndarray) -> np.ndarray | None:
    """A batch-2 crop of a different size: proves batch and tile size are really symbolic."""
    n, _, h, w = sample.shape
    size_h = (h // 2) // SHAPE_MULTIPLE * SHAPE_MULTIPLE
    size_w = (w // 2) // SHAPE_MULTIPLE * SHAPE_MULTIPLE
    if size_h < SHAPE_MULTIPLE or size_w < SHAPE_MULTIPLE:
        return None
    crops = [sample[i % n, :, :size_h, :size_w] for i in range(2)]
    crops[1] = sample[(1 % n), :, h - size_h :, w - size_w :]
    return np.ascontiguousarray(np.stack(crops))


def _simplify(proto: Any) -> Any:
    """Fold constants and fuse what onnxslim can; keep the original graph if simplification fails."""
    try:
        import onnxslim
    except ImportError:
        log.warning("onnxslim is not installed: exporting without graph simplification")
        return proto
    try:
        return onnxslim.slim(proto)
    except Exception as exc:  # onnxslim raises anything; an unsimplified graph is still correct
        log.warning("onnxslim failed (%s): keeping the unsimplified graph", exc)
        return proto
