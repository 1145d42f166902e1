"""Each tier's network on a GPU in PyTorch: tiles/s and peak VRAM at 512 px in fp32, bf16 and fp16.

Run on a machine with an NVIDIA GPU and the train extra (torch), then merge the JSON into the bench:

    python bench/gpu_tiers.py --json bench/results/gpu-DATE.json
    edge-ls bench ... --gpu-json bench/results/gpu-DATE.json

The network of a tier is the torch architecture its training run recorded in the ONNX metadata
(``provenance.config.model.name``), else the one its profile is built from (``NETWORKS``). Weights
are random: throughput and memory do not depend on them. bf16/fp16 are autocast over the fp32
network, as a TensorRT or ONNX Runtime CUDA deployment of those precisions would run it. Edge-Nano
is a per-pixel index with no network (not measured). Without a CUDA device this exits with code 2
and writes nothing: no GPU figure is ever made up.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Tier (profile) -> role -> training network name, for tiers whose ONNX is not installed here.
NETWORKS: dict[str, dict[str, str]] = {
    "edge-lite": {"primary": "edge_lite"},
    "edge-cascade": {"triage": "cascade_triage", "refiner": "cascade_refiner_r18"},
    "edge-cascade-nano": {"refiner": "edge_lite"},
    "fusion": {"primary": "fusion"},
    "fusion-gan": {"primary": "fusion_gan"},
}
PRECISIONS = ("fp32", "bf16", "fp16")


def network_name(tier: str, role: str) -> str | None:
    """The recorded architecture of a tier's model, else the table's."""
    from edge_ls.deployment import deploy
    from edge_ls.errors import EdgeLSError

    try:
        model = deploy(tier).models[role]
        name = ((model.spec.provenance.get("config") or {}).get("model") or {}).get("name")
        if name:
            return str(name)
    except (EdgeLSError, KeyError):
        pass
    return NETWORKS.get(tier, {}).get(role)


def measure(network: str, precision: str, batch: int, tile: int, seconds: float) -> dict[str, Any]:
    import torch

    from edge_ls.training.networks import build_model

    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    net = build_model(network).cuda().eval()
    x = torch.rand(batch, 3, tile, tile, device="cuda")
    torch.cuda.reset_peak_memory_stats()
    with (
        torch.inference_mode(),
        torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        for _ in range(3):  # warm-up: cuDNN autotuning, allocator
            net(x)
        torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            net(x)
            n += batch
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 2**20
    del net
    torch.cuda.empty_cache()
    return {"tiles_per_s": round(n / wall, 2), "peak_vram_mb": round(peak, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--tiers", default=",".join(NETWORKS))
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per measurement")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print("gpu_tiers: no CUDA device here; nothing measured, nothing written", file=sys.stderr)
        return 2
    from edge_ls.profiles import load_profile

    rows = []
    for tier in args.tiers.split(","):
        profile = load_profile(tier)
        for role in profile.models:
            network = network_name(tier, role)
            if network is None:
                rows.append(
                    {"tier": tier, "role": role, "network": None, "note": "no network (not measured)"}
                )
                continue
            for precision in PRECISIONS:
                figures = measure(network, precision, profile.batch, args.tile, args.seconds)
                rows.append({"tier": tier, "role": role, "network": network, "precision": precision,
                             "batch": profile.batch, "tile": args.tile, **figures})  # fmt: skip
                print(rows[-1], file=sys.stderr)
    result = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "command": "python bench/gpu_tiers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "rows": rows,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
