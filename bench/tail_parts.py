"""The serial parts of a ``detect`` run, each timed alone: where the head and tail figures of
bench/README.md "Streamed overviews" come from.

    python bench/tail_parts.py SCENE.tif [--repeats 3]

* the COG copy of a committed layer (probability, mask) from a raw file like the writer's: GDAL
  building the overviews itself (``OVERVIEWS=AUTO``, one thread, the old copy), the levels streamed
  by :mod:`edge_ls.io.overviews` (one and two GDAL threads), and the streaming reduction alone;
* ``RasterSource`` opening the scene with its statistics sample read in two parts or in one.

It runs ``edge-ls detect`` on SCENE once (default model) to get real layers; medians of the repeats.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: ``bench.*`` importable

from edge_ls.deployment import LoadedModel
from edge_ls.io import outputs, source
from edge_ls.io.overviews import OverviewPyramid
from edge_ls.pipeline import GDAL_CACHE_MB, detect


def median_s(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3)


def streamed_levels(values: np.ndarray, kind: str, nodata: float, folder: Path, stem: str) -> list[str]:
    """Reduce ``values`` in the writer's 32-row chunks; each level as a raw file + VRT; their VRT names."""
    h, w = values.shape
    pyramid = OverviewPyramid(w, h, block=outputs.BLOCK_SIZE, kind=kind, nodata=nodata)
    levels = [np.zeros((lh, lw), values.dtype) for lw, lh in pyramid.sizes]
    for r0 in range(0, h, outputs.CHUNK_ROWS):
        for level, first, rows in pyramid.add(values[r0 : r0 + outputs.CHUNK_ROWS]):
            levels[level][first : first + rows.shape[0]] = rows
    names = []
    for i, level in enumerate(levels, start=1):
        raw = f"{stem}.ovr{i}.raw"
        level.tofile(folder / raw)
        lh, lw = level.shape
        (folder / f"{stem}.ovr{i}.vrt").write_text(
            outputs._raw_vrt(raw, level.dtype, nodata, lw, lh, None, None)
        )
        names.append(f"{stem}.ovr{i}.vrt")
    return names


def copy_cog(vrt: Path, dst: Path, kind: str, threads: int, overviews: str) -> None:
    predictor = "NO" if kind == "mode" else "YES"
    with rasterio.open(vrt) as ds:
        rasterio.shutil.copy(
            ds, dst, driver="COG", BLOCKSIZE=outputs.BLOCK_SIZE, COMPRESS="ZSTD", LEVEL=1,
            NUM_THREADS=threads, PREDICTOR=predictor, RESAMPLING=kind.upper(), OVERVIEWS=overviews,
        )  # fmt: skip


def layer_parts(layer: Path, folder: Path, kind: str, repeats: int) -> str:
    """The copy of one committed layer timed the old way and the streamed way."""
    name = layer.stem
    with rasterio.open(layer) as ds:
        values, nodata, crs, transform = ds.read(1), ds.nodata, ds.crs, ds.transform
    values.tofile(folder / f"{name}.raw")
    h, w = values.shape
    (folder / f"{name}.vrt").write_text(
        outputs._raw_vrt(f"{name}.raw", values.dtype, nodata, w, h, crs, transform)
    )
    levels = streamed_levels(values, kind, nodata, folder, name)
    vrt = outputs._raw_vrt(f"{name}.raw", values.dtype, nodata, w, h, crs, transform, overviews=levels)
    (folder / f"{name}.levels.vrt").write_text(vrt)
    dst = folder / f"{name}.cog.tif"
    gdal = median_s(lambda: copy_cog(folder / f"{name}.vrt", dst, kind, 1, "AUTO"), repeats)
    reduce = median_s(lambda: streamed_levels(values, kind, nodata, folder, name), repeats)
    one, two = (
        median_s(
            lambda t=t: copy_cog(folder / f"{name}.levels.vrt", dst, kind, t, "FORCE_USE_EXISTING"), repeats
        )
        for t in (1, 2)
    )
    return (
        f"{name} {w}x{h}: COG copy, GDAL builds the overviews {gdal} s; streamed levels: reduction "
        f"{reduce} s (writer thread), copy {one} s (1 thread) / {two} s (2 threads)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scene", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024):
        folder = Path(tmp)
        detect(args.scene, None, folder / "out")
        for name, kind in (("probability", "average"), ("mask", "mode")):
            print(layer_parts(folder / "out" / f"{name}.tif", folder, kind, args.repeats))
        spec = LoadedModel.load("default").spec
        split = median_s(lambda: source.RasterSource(args.scene, spec), args.repeats)
        real_split = source.sample_split
        source.sample_split = lambda *_: None
        try:
            whole = median_s(lambda: source.RasterSource(args.scene, spec), args.repeats)
        finally:
            source.sample_split = real_split
        print(f"RasterSource open: sample in two parts {split} s, in one read {whole} s")


if __name__ == "__main__":
    main()
