"""Where one ``detect`` run's memory sits: the components behind the RSS peak, sampled every 0.2 s.

Per sample: VmRSS (anonymous and file-backed), glibc's heap in use and free-but-kept (``mallinfo2``,
all arenas), GDAL's block cache in use, and the bytes of the blender's held rows. Printed: the sample
at the RSS peak and each column's maximum. With ``--tracemalloc``: the largest Python/numpy allocation
sites at the traced peak (much slower; numpy registers its buffers with tracemalloc).

    python bench/memory_profile.py SCENE.tif OUT_DIR [--model edge-nano] [--tracemalloc]

Linux only (``/proc``, glibc). GDAL is found through rasterio's bundled or system library.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import glob
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``bench.*`` importable

from bench.rss_probe import status_mib
from edge_ls import blend
from edge_ls.pipeline import DetectOptions, detect

_MALLINFO2_FIELDS = (
    "arena",
    "ordblks",
    "smblks",
    "hblks",
    "hblkhd",
    "usmblks",
    "fsmblks",
    "uordblks",
    "fordblks",
    "keepcost",
)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in _MALLINFO2_FIELDS]


def _gdal() -> Any:
    libs = sorted(
        glob.glob(
            os.path.join(os.path.dirname(rasterio.__file__), os.pardir, "rasterio.libs", "libgdal*.so*")
        )
    )
    lib = ctypes.CDLL(libs[0] if libs else ctypes.util.find_library("gdal"))
    lib.GDALGetCacheUsed64.restype = ctypes.c_int64
    return lib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="edge-nano")
    parser.add_argument("--tracemalloc", action="store_true", help="top allocation sites at the traced peak")
    args = parser.parse_args()

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    gdal = _gdal()
    blenders: list[blend.RowBandBlender] = []
    init = blend.RowBandBlender.__init__

    def remember(self: blend.RowBandBlender, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        blenders.append(self)

    blend.RowBandBlender.__init__ = remember  # type: ignore[method-assign]
    if args.tracemalloc:
        tracemalloc.start(6)
    samples: list[dict[str, float]] = []
    best: list[Any] = [0, None]  # traced bytes, snapshot
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            row = status_mib("VmRSS", "RssAnon", "RssFile")
            info = libc.mallinfo2()
            row["heap_in_use"] = (info.uordblks + info.hblkhd) / 2**20
            row["heap_free_kept"] = info.fordblks / 2**20
            row["gdal_cache"] = gdal.GDALGetCacheUsed64() / 2**20
            held = list(blenders[-1]._bands.values()) if blenders else []
            row["blender_rows"] = sum(a.nbytes for a in held) / 2**20
            samples.append(row)
            if args.tracemalloc:
                traced = tracemalloc.get_traced_memory()[0]
                if traced > best[0] + 5e6:
                    best[0], best[1] = traced, tracemalloc.take_snapshot()
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    report = detect(args.scene, args.model, args.out, DetectOptions())
    done.set()
    print(f"tiles {report['tiles']}  tiles/s {report['tiles_per_s']}  peak RSS {report['peak_rss_mb']} MiB")
    peak = max(samples, key=lambda r: r["VmRSS"])
    print("at the sampled RSS peak (MiB):", ", ".join(f"{k} {v:.0f}" for k, v in peak.items()))
    print("maximum of each (MiB):", ", ".join(f"{k} {max(r[k] for r in samples):.0f}" for k in peak))
    if best[1] is not None:
        snapshot = best[1].filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
        print(f"traced peak {best[0] / 2**20:.0f} MiB; largest allocation sites there:")
        for stat in snapshot.statistics("traceback")[:10]:
            where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-3:]))
            print(f"  {stat.size / 2**20:6.1f} MiB in {stat.count:>7} blocks  {where}")


if __name__ == "__main__":
    main()
