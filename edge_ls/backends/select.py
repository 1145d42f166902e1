"""Pick the runner a tier profile asks for: its ``backends`` list, best first, down to what this machine has.

A profile lists backends in preference order (``tensorrt > onnxruntime-cuda > onnxruntime-cpu``). Each
is tried in turn; one that cannot run here is skipped with a one-line reason, and the reasons go into
the report, so a user on a CPU-only ground station sees that TensorRT was wanted, why it was not used,
and what to install. A backend that is present but fails (an engine that does not build) is skipped
the same way, loudly: the run goes on with the next backend rather than not at all. Only when no
listed backend can run does selection fail; for a TensorRT-only profile that error names the extra.

TensorRT is imported only inside :func:`_tensorrt_runner`, and only once ``tensorrt`` and ``pycuda``
are known to be importable: the CPU runtime never loads them. The TensorRT runner lives in the engines
layer, above this one, so it is found through the ``edge_ls.backends`` entry point it registers in
``pyproject.toml`` (``edge_ls.engines.backend:tensorrt_runner``), never imported from here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_ls.backends.base import Runner
from edge_ls.backends.onnxrt import OnnxRuntimeRunner, available_providers
from edge_ls.errors import EdgeLSError, MissingExtraError

if TYPE_CHECKING:
    from edge_ls.deployment import Deployment
    from edge_ls.profiles import Profile

#: Entry-point group where the layers above the runtime register backends (``pyproject.toml``).
BACKEND_GROUP = "edge_ls.backends"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


#: Most inference streams used by default: two single-threaded streams fill a 2-core ground station;
#: more streams on a big CPU would only multiply activation memory for little gain over intra-op threads.
MAX_DEFAULT_STREAMS = 2


def default_streams(providers: Sequence[str]) -> int:
    """One stream per core (at most MAX_DEFAULT_STREAMS) on the CPU; one when a GPU provider leads."""
    if providers and providers[0] != CPU_PROVIDER:
        return 1
    return max(1, min(MAX_DEFAULT_STREAMS, os.cpu_count() or 1))


def make_runner(deployment: Deployment) -> Runner:
    """The runner a deployment asks for: its backend order for each model, then the cascade
    (triage -> refiner on ROIs) and the uncertainty layer (D4 test-time augmentation) on top."""
    options = deployment.options

    def one(role: str) -> Runner:
        path = deployment.models[role].path
        if deployment.profile is None:  # a bare model: ONNX Runtime with the best provider it has
            providers = available_providers()
            return OnnxRuntimeRunner(
                path,
                providers=providers,
                intra_op_threads=options.intra_op_threads,
                streams=options.streams or default_streams(providers),
            )
        return select_runner(
            path,
            deployment.backends,
            profile=deployment.profile,
            streams=options.streams or default_streams([CPU_PROVIDER]),
            intra_op_threads=options.intra_op_threads,
        ).runner

    if deployment.is_cascade:
        from edge_ls.backends.cascade import CascadeRunner

        assert deployment.roi_threshold is not None  # the profile loader requires it for a cascade
        runner: Runner = CascadeRunner(
            one("triage"),
            one("refiner"),
            triage_spec=deployment.models["triage"].spec,
            refiner_spec=deployment.models["refiner"].spec,
            roi_threshold=deployment.roi_threshold,
            batch_size=options.batch_size,
            refiner_views=options.views,
            refiner_scales=options.scales,
            roi_area=deployment.roi_area,
            neighbours=deployment.roi_neighbours,
            roi_window=deployment.roi_window,
            decision_threshold=deployment.threshold,
        )
    else:
        runner = one("primary")
        if options.views > 1 or options.scales != (1.0,):
            from edge_ls.backends.tta import AveragingRunner

            runner = AveragingRunner(runner, deployment.model.spec, options.views, options.scales)
    if options.uncertainty_tta:
        from edge_ls.backends.tta import TTARunner

        runner = TTARunner(runner, deployment.model.spec, options.uncertainty_tta)
    return runner


@dataclass
class Selection:
    """The runner chosen and, for every backend tried before it, why it was not used."""

    runner: Runner
    backend: str
    skipped: list[str] = field(default_factory=list)


def select_runner(
    model_path: str | Path,
    backends: Sequence[str],
    *,
    profile: Profile | None = None,
    streams: int = 1,
    intra_op_threads: int | None = None,
    engine_cache: str | Path | None = None,
) -> Selection:
    """The first backend of ``backends`` that can run ``model_path`` here (see the module docstring).

    ``profile`` (a :class:`edge_ls.profiles.Profile`) is needed for TensorRT: its batch and tile
    ranges become the engine's optimization profile.
    """
    skipped: list[str] = []
    last_error: EdgeLSError | None = None
    for backend in backends:
        try:
            runner = _make(backend, Path(model_path), profile, streams, intra_op_threads, engine_cache)
        except EdgeLSError as exc:
            skipped.append(f"{backend}: {exc}")
            last_error = exc
            continue
        runner.selection_notes = tuple(skipped)
        return Selection(runner, backend, skipped)
    if len(backends) == 1 and last_error is not None:
        raise last_error  # e.g. MissingExtraError naming edge-ls[gpu] (exit 5)
    raise EdgeLSError("no backend of " + " > ".join(backends) + " can run here: " + "; ".join(skipped))


def _make(
    backend: str,
    path: Path,
    profile: Profile | None,
    streams: int,
    intra_op_threads: int | None,
    engine_cache: str | Path | None,
) -> Runner:
    if backend == "onnxruntime-cpu":
        return OnnxRuntimeRunner(path, providers=[CPU_PROVIDER], intra_op_threads=intra_op_threads,
                                 streams=streams)  # fmt: skip
    if backend == "onnxruntime-cuda":
        import onnxruntime as ort

        if CUDA_PROVIDER not in ort.get_available_providers():
            raise EdgeLSError("this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        return OnnxRuntimeRunner(path, providers=[CUDA_PROVIDER, CPU_PROVIDER])
    if backend == "tensorrt":
        return _tensorrt_runner(path, profile, engine_cache)
    raise EdgeLSError(f"unknown backend '{backend}'")


def _tensorrt_runner(path: Path, profile: Profile | None, engine_cache: str | Path | None) -> Runner:
    """The TensorRT runner from the factory the engines layer registers (see the module docstring)."""
    for module, package in (("tensorrt", "tensorrt"), ("pycuda", "pycuda")):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "gpu", "the TensorRT backend")
    return registered_backend("tensorrt")(path, profile, engine_cache)


def registered_backend(name: str) -> Callable[[Path, Any, str | Path | None], Runner]:
    """The runner factory registered as ``name`` in the ``edge_ls.backends`` entry-point group."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=BACKEND_GROUP):
        if entry.name == name:
            return entry.load()
    raise EdgeLSError(
        f"backend '{name}' is not registered (entry-point group '{BACKEND_GROUP}'): "
        "reinstall edge-ls (pip install -e .) so its package metadata lists it"
    )
