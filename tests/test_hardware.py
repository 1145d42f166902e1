"""Hardware detection on this machine (no GPU) and the auto tier pick on constructed hardware.

The probes that need a GPU (nvidia-smi output, Jetson device tree, /proc/driver/nvidia) are exercised
with their documented output formats through the injectable runner and root: this checks the parsing
and the decisions, not a real GPU (there is none here).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edge_ls.hardware import DATACENTER_VRAM_GB, Gpu, Hardware, detect_hardware, pick_profile
from edge_ls.profiles import load_profile

A100 = Gpu("NVIDIA A100-SXM4-80GB", 81920, (8, 0))
RTX3060 = Gpu("NVIDIA GeForce RTX 3060", 12288, (8, 6))


def test_real_detection_on_this_machine():
    """These machines have no GPU: detection must say so, and why; on a GPU machine, name the GPU."""
    hw = detect_hardware()
    assert hw.cpu_count >= 1 and hw.ram_mb > 0
    assert "CPUExecutionProvider" in hw.onnxruntime_providers
    name, reason = pick_profile(hw)
    if hw.has_gpu:  # a lent GPU machine
        assert hw.best_gpu is not None and hw.best_gpu.name in reason
        assert load_profile(name).tier == name
        return
    assert hw.best_gpu is None and name == "edge-lite"
    assert reason.startswith("no NVIDIA GPU found") and "ONNX Runtime" in reason
    assert "nvidia-smi" in reason  # says why, not just what
    assert hw.describe().startswith("no NVIDIA GPU found")


@pytest.mark.parametrize(
    ("hw", "tier", "words"),
    [
        (Hardware(gpus=(A100,), tensorrt_version="10.8.0"), "fusion-gan", "datacenter GPU NVIDIA A100"),
        (Hardware(gpus=(RTX3060,), tensorrt_version="10.8.0"), "edge-cascade", "less than 16 GB"),
        (
            Hardware(
                gpus=(Gpu("Tesla V100", 16384, (7, 0)),), onnxruntime_providers=("CUDAExecutionProvider",)
            ),
            "fusion-gan",
            "16 GB",
        ),
        (
            Hardware(gpus=(Gpu("RTX A4000", 16376, (8, 6)),), tensorrt_version="10.1.0"),
            "edge-cascade",
            "less than",
        ),
        (
            Hardware(
                gpus=(Gpu("NVIDIA Jetson AGX Orin", 62000, (8, 7), "jetson device tree"),),
                is_jetson=True,
                tensorrt_version="10.3.0",
            ),
            "edge-cascade",
            "Jetson",
        ),
        (Hardware(gpus=(A100,)), "edge-lite", "no GPU backend is installed"),
        (Hardware(gpus=(RTX3060, A100), tensorrt_version="10.8.0"), "fusion-gan", "A100"),
    ],
)
def test_pick_profile_on_constructed_hardware(hw, tier, words):
    name, reason = pick_profile(hw)
    assert name == tier and words in reason
    assert load_profile(name).tier == name  # every pick is a real profile


def test_datacenter_threshold_is_16_gb():
    assert DATACENTER_VRAM_GB == 16.0
    just_under = Hardware(gpus=(Gpu("x", 16 * 1024 - 1, (8, 9)),), tensorrt_version="10")
    exactly = Hardware(gpus=(Gpu("x", 16 * 1024, (8, 9)),), tensorrt_version="10")
    assert pick_profile(just_under)[0] == "edge-cascade" and pick_profile(exactly)[0] == "fusion-gan"


def _fake_root(tmp_path: Path, meminfo_kb: int = 32 * 1024 * 1024) -> Path:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "meminfo").write_text(f"MemTotal:       {meminfo_kb} kB\nMemFree: 1 kB\n")
    return tmp_path


def _no_smi(cmd):
    raise FileNotFoundError(cmd[0])


def test_nvidia_smi_output_is_parsed(tmp_path):
    seen = []

    def smi(cmd):
        seen.append(cmd)
        return "NVIDIA A100-SXM4-80GB, 81920, 8.0\nNVIDIA GeForce RTX 3060, 12288, 8.6\n"

    hw = detect_hardware(run=smi, root=_fake_root(tmp_path))
    assert seen[0][:2] == ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap"]
    assert hw.gpus == (A100, RTX3060)
    assert hw.best_gpu == A100 and A100.sm == "sm_80" and not hw.is_jetson
    assert hw.ram_mb == 32 * 1024


def test_old_driver_without_compute_cap_is_asked_again(tmp_path):
    def smi(cmd):
        if "compute_cap" in cmd[1]:
            raise subprocess.CalledProcessError(2, cmd, stderr='Field "compute_cap" is not a valid field.')
        return "Tesla T4, 15360\n"

    hw = detect_hardware(run=smi, root=_fake_root(tmp_path))
    assert hw.gpus == (Gpu("Tesla T4", 15360, None),)
    assert hw.gpus[0].sm == "sm_?"


def test_failing_nvidia_smi_is_a_note_not_a_crash(tmp_path):
    def smi(cmd):
        raise subprocess.CalledProcessError(9, cmd, stderr="NVIDIA-SMI has failed because it couldn't talk")

    hw = detect_hardware(run=smi, root=_fake_root(tmp_path))
    assert not hw.has_gpu
    assert any("nvidia-smi failed (NVIDIA-SMI has failed" in n for n in hw.notes)
    assert "nvidia-smi failed" in pick_profile(hw)[1]


def test_jetson_is_found_from_the_device_tree(tmp_path):
    root = _fake_root(tmp_path, meminfo_kb=64 * 1024 * 1024)
    (root / "proc" / "device-tree").mkdir()
    (root / "proc" / "device-tree" / "model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    hw = detect_hardware(run=_no_smi, root=root)
    assert hw.is_jetson and hw.gpus[0].compute_capability == (8, 7)
    assert hw.gpus[0].memory_mb == 64 * 1024  # shared memory
    assert hw.gpus[0].source == "jetson device tree"


def test_proc_driver_fallback_names_the_gpu(tmp_path):
    root = _fake_root(tmp_path)
    info = root / "proc" / "driver" / "nvidia" / "gpus" / "0000:3b:00.0"
    info.mkdir(parents=True)
    (info / "information").write_text("Model: \t\t Tesla T4\nIRQ:   \t\t 90\nBus Type: \t PCIe\n")
    hw = detect_hardware(run=_no_smi, root=root)
    assert hw.gpus == (Gpu("Tesla T4", 0, None, "/proc/driver/nvidia"),)
