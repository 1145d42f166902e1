"""Peak-memory probe for one ``detect`` run: VmRSS sampled every 50 ms (while streaming and while
finalizing), the report's peak, throughput, and (``--stages``) the wall and CPU seconds of each stage
(``bench/pipeline.py``'s timers: which thread is the bottleneck lane).

Used for the memory figures quoted in ``edge_ls/pipeline.py`` (glibc mmap threshold) and
``edge_ls/io/outputs.py`` (chunked vs whole-band writing). Run each scene in a fresh process:

    python bench/rss_probe.py SCENE.tif OUT_DIR [--threshold 0.5] [--model edge-nano] [--stages]

Scenes: ``bench/scenes.py`` (e.g. ~/.cache/edge-ls/bench/mosaic_10000x10000_s20240_v1.tif).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``bench.*`` importable

from edge_ls.pipeline import DetectOptions, detect

#: Sampling period of VmRSS: short enough that a finalize of a tenth of a second is sampled.
SAMPLE_S = 0.05


def status_mib(*fields: str) -> dict[str, float]:
    """The given kB fields of /proc/self/status (``VmRSS``, ``RssAnon``...), in MiB; NaN if missing."""
    found = {field: float("nan") for field in fields}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in found:
            found[key] = int(value.split()[0]) / 1024.0
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--model", default="edge-nano")
    parser.add_argument("--stages", action="store_true", help="print the report's per-stage timers")
    args = parser.parse_args()
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.perf_counter() - t0, status_mib("VmRSS")["VmRSS"]))
            time.sleep(SAMPLE_S)

    threading.Thread(target=sample, daemon=True).start()
    report = detect(args.scene, args.model, args.out, DetectOptions(threshold=args.threshold))
    ended = time.perf_counter() - t0
    done.set()
    print(f"tiles {report['tiles']}  tiles/s {report['tiles_per_s']}  peak RSS {report['peak_rss_mb']} MiB")
    print("max sampled VmRSS", round(max(r for _, r in samples)), "MiB over", round(samples[-1][0], 1), "s")
    # When finalize (COG copies, quicklook) started, counted back from detect's return with the report's
    # own finalize timer (only the commit's renames come after it): splits the samples into stream and
    # finalize. (Counted from the start it would be early by detect's model loading.)
    finalize = report["stages"].get("finalize")
    if finalize:
        split = ended - finalize["wall_s"]
        stream = [r for t, r in samples if t < split] or [float("nan")]
        tail = [r for t, r in samples if t >= split] or [float("nan")]
        print(
            f"max sampled VmRSS while streaming {max(stream):.0f} MiB, while finalizing "
            f"{max(tail):.0f} MiB (finalize from {split:.1f} s)"
        )
    if args.stages:
        for label, v in report["stages"].items():
            cpu, calls = v["cpu_s"], v["calls"]
            print(f"  {label:22s} wall {v['wall_s']:7.2f} s  thread CPU {cpu:7.2f} s  calls {calls}")


if __name__ == "__main__":
    main()
