"""What accelerator this machine has, and which tier profile fits it (``--profile auto``).

Detection needs no CUDA Python package: it asks ``nvidia-smi`` (name, memory, compute capability),
falls back to ``/proc/driver/nvidia/gpus`` (driver loaded but no nvidia-smi), and recognises Jetson
boards (no nvidia-smi on most JetPacks; GPU memory is the shared RAM). It also notes whether a GPU
backend is installed (TensorRT, onnxruntime's CUDA provider), because a GPU nothing can use is no GPU.
Every probe is cheap, has a timeout, and failing probes are recorded as notes, never raised.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: GPUs with at least this much memory get the full Fusion+GAN tier; smaller ones the cascade.
DATACENTER_VRAM_GB = 16.0
NVIDIA_SMI_TIMEOUT_S = 10.0
#: Jetson modules by the name in /proc/device-tree/model -> compute capability.
JETSON_COMPUTE = (("orin", (8, 7)), ("xavier", (7, 2)), ("thor", (11, 0)), ("nano", (5, 3)), ("tx2", (6, 2)))

#: Runs a command line and returns its stdout (``subprocess`` by default; tests pass a fake). Not the
#: inference :class:`edge_ls.backends.base.Runner`.
CommandRunner = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class Gpu:
    """One NVIDIA GPU as detected; memory in MiB, compute capability as (major, minor) when known."""

    name: str
    memory_mb: int
    compute_capability: tuple[int, int] | None = None
    source: str = "nvidia-smi"

    @property
    def memory_gb(self) -> float:
        return self.memory_mb / 1024.0

    @property
    def sm(self) -> str:
        """``sm_86``-style architecture tag, or ``sm_?`` when unknown."""
        cc = self.compute_capability
        return f"sm_{cc[0]}{cc[1]}" if cc else "sm_?"


@dataclass(frozen=True)
class Hardware:
    """What :func:`detect_hardware` found; construct it directly to ask "what would auto pick on X?"."""

    gpus: tuple[Gpu, ...] = ()
    is_jetson: bool = False
    cpu_count: int = 1
    ram_mb: int = 0
    tensorrt_version: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def best_gpu(self) -> Gpu | None:
        return max(self.gpus, key=lambda g: g.memory_mb) if self.gpus else None

    @property
    def gpu_backend(self) -> str | None:
        """The GPU backend that could run here: TensorRT first, then onnxruntime's CUDA provider."""
        if self.tensorrt_version:
            return f"TensorRT {self.tensorrt_version}"
        if "CUDAExecutionProvider" in self.onnxruntime_providers:
            return "onnxruntime CUDA provider"
        return None

    def describe(self) -> str:
        """One line for logs and ``edge-ls profiles``."""
        cpu = f"{self.cpu_count} CPU cores, {self.ram_mb / 1024:.0f} GiB RAM"
        if not self.gpus:
            return f"no NVIDIA GPU found; {cpu}"
        gpus = ", ".join(f"{g.name} ({g.memory_gb:.0f} GB, {g.sm})" for g in self.gpus)
        kind = "Jetson " if self.is_jetson else ""
        return f"{kind}GPU: {gpus}; {cpu}; GPU backend: {self.gpu_backend or 'none installed'}"


def pick_profile(hw: Hardware) -> tuple[str, str]:
    """The tier for this hardware and why, in words a user can check.

    No usable GPU: Edge-Lite on ONNX Runtime (CPU, INT8). Jetson or a GPU under 16 GB: Edge-Cascade.
    A datacenter GPU (16 GB or more): Fusion+GAN.
    """
    gpu = hw.best_gpu
    if gpu is None:
        why = "; ".join(hw.notes) if hw.notes else "no NVIDIA GPU"
        return "edge-lite", f"no NVIDIA GPU found ({why}): Edge-Lite, INT8 on ONNX Runtime (CPU)"
    seen = f"{gpu.name}, {gpu.memory_gb:.0f} GB, {gpu.sm}"
    if hw.gpu_backend is None:
        return "edge-lite", (
            f"GPU {seen} found but no GPU backend is installed (pip install 'edge-ls[gpu]' for TensorRT, "
            "or onnxruntime-gpu): Edge-Lite, INT8 on ONNX Runtime (CPU)"
        )
    if hw.is_jetson:
        return "edge-cascade", f"Jetson ({seen}): Edge-Cascade (light triage + ROI refinement)"
    if gpu.memory_gb < DATACENTER_VRAM_GB:
        return "edge-cascade", (
            f"GPU {seen} has less than {DATACENTER_VRAM_GB:.0f} GB: "
            "Edge-Cascade (light triage + ROI refinement)"
        )
    return "fusion-gan", f"datacenter GPU {seen} (>= {DATACENTER_VRAM_GB:.0f} GB): Fusion+GAN (full)"


# --------------------------------------------------------------------------------------------- probes


def detect_hardware(run: CommandRunner | None = None, root: Path = Path("/")) -> Hardware:
    """Probe this machine (``run`` and ``root`` are injectable so each probe can be exercised)."""
    run = run or _run
    notes: list[str] = []
    gpus = list(_from_nvidia_smi(run, notes))
    jetson_model = _jetson_model(root)
    ram_mb = _ram_mb(root)
    if not gpus and jetson_model:
        gpus.append(Gpu(jetson_model, ram_mb, _jetson_cc(jetson_model), source="jetson device tree"))
    if not gpus:
        gpus.extend(_from_proc(root, notes))
    return Hardware(
        gpus=tuple(gpus),
        is_jetson=jetson_model is not None,
        cpu_count=os.cpu_count() or 1,
        ram_mb=ram_mb,
        tensorrt_version=_package_version("tensorrt"),
        onnxruntime_providers=_ort_providers(),
        notes=tuple(notes),
    )


def _run(cmd: Sequence[str]) -> str:
    """Run a probe command; raises FileNotFoundError, CalledProcessError or TimeoutExpired."""
    if shutil.which(cmd[0]) is None:
        raise FileNotFoundError(cmd[0])
    done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=True)
    return done.stdout


_SMI_QUERY = ("name", "memory.total", "compute_cap")


def _from_nvidia_smi(run: CommandRunner, notes: list[str]) -> list[Gpu]:
    """Parse ``nvidia-smi --query-gpu``; older drivers lack ``compute_cap``, so retry without it."""
    for fields in (_SMI_QUERY, _SMI_QUERY[:2]):
        cmd = ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"]
        try:
            out = run(cmd)
        except FileNotFoundError:
            notes.append("nvidia-smi not found")
            return []
        except subprocess.TimeoutExpired:
            notes.append("nvidia-smi timed out")
            return []
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()
            if len(fields) == 3:
                continue  # maybe an old driver without compute_cap: ask again without it
            notes.append(f"nvidia-smi failed ({detail[0][:120] if detail else f'exit {exc.returncode}'})")
            return []
        gpus = [g for g in (_parse_smi_line(line) for line in out.splitlines()) if g]
        if not gpus:
            notes.append("nvidia-smi listed no GPU")
        return gpus
    return []


def _parse_smi_line(line: str) -> Gpu | None:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 2 or not parts[0]:
        return None
    try:
        memory = int(float(parts[1]))
    except ValueError:
        return None
    cc = None
    if len(parts) > 2:
        m = re.fullmatch(r"(\d+)\.(\d+)", parts[2])
        cc = (int(m.group(1)), int(m.group(2))) if m else None
    return Gpu(parts[0], memory, cc, source="nvidia-smi")


def _from_proc(root: Path, notes: list[str]) -> list[Gpu]:
    """Driver loaded without nvidia-smi: names from /proc (memory unknown, reported as 0)."""
    gpus_dir = root / "proc" / "driver" / "nvidia" / "gpus"
    if not gpus_dir.is_dir():
        notes.append("no /proc/driver/nvidia (no NVIDIA driver loaded)")
        return []
    out = []
    for info in sorted(gpus_dir.glob("*/information")):
        m = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), re.MULTILINE)
        if m:
            out.append(Gpu(m.group(1).strip(), 0, None, source="/proc/driver/nvidia"))
    if not out:
        notes.append("/proc/driver/nvidia lists no GPU")
    return out


def _jetson_model(root: Path) -> str | None:
    """'NVIDIA Jetson AGX Orin ...' from the device tree, or None off a Jetson."""
    model = root / "proc" / "device-tree" / "model"
    try:
        text = model.read_bytes().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return None
    return text if "jetson" in text.lower() else None


def _jetson_cc(model: str) -> tuple[int, int] | None:
    lower = model.lower()
    return next((cc for key, cc in JETSON_COMPUTE if key in lower), None)


def _ram_mb(root: Path) -> int:
    try:
        m = re.search(r"^MemTotal:\s+(\d+)\s+kB", (root / "proc" / "meminfo").read_text(), re.MULTILINE)
    except OSError:
        return 0
    return int(m.group(1)) // 1024 if m else 0


def _package_version(name: str) -> str | None:
    """Installed version without importing the package (importing TensorRT needs a driver)."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _ort_providers() -> tuple[str, ...]:
    try:
        import onnxruntime as ort
    except ImportError:
        return ()
    return tuple(ort.get_available_providers())
