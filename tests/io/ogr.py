"""What GDAL/OGR itself reads from a vector file, for the tests: ``ogrinfo -json`` through the libgdal
that rasterio bundles (rasterio has no vector API; pyogrio/fiona are not dependencies).

Checking our GeoJSON and GeoPackage with a real OGR driver is the point: a file that only our own
parser accepts is not a GIS output.
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
from pathlib import Path

import pytest
import rasterio


def _gdal() -> ctypes.CDLL:
    libs = sorted(
        glob.glob(os.path.join(os.path.dirname(rasterio.__file__), "..", "rasterio.libs", "libgdal*"))
    )
    if not libs:
        pytest.skip("rasterio's bundled libgdal not found (a system GDAL build of rasterio)")
    lib = ctypes.CDLL(libs[0])
    lib.GDALAllRegister()
    lib.GDALOpenEx.restype = ctypes.c_void_p
    lib.GDALOpenEx.argtypes = [
        ctypes.c_char_p,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    lib.GDALVectorInfoOptionsNew.restype = ctypes.c_void_p
    lib.GDALVectorInfoOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
    lib.GDALVectorInfo.restype = ctypes.c_void_p
    lib.GDALVectorInfo.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.GDALClose.argtypes = [ctypes.c_void_p]
    lib.GDALVectorInfoOptionsFree.argtypes = [ctypes.c_void_p]
    lib.VSIFree.argtypes = [ctypes.c_void_p]
    return lib


def ogrinfo(path: Path, *features: str) -> dict:
    """``ogrinfo -json -al [-features]`` of ``path`` as a dict; fails the test if OGR cannot open it."""
    lib = _gdal()
    ds = lib.GDALOpenEx(str(path).encode(), 0x04, None, None, None)  # GDAL_OF_VECTOR
    assert ds, f"GDAL/OGR cannot open {path}"
    args = [b"-json", b"-al", *(a.encode() for a in features), None]
    options = lib.GDALVectorInfoOptionsNew((ctypes.c_char_p * len(args))(*args), None)
    try:
        text = lib.GDALVectorInfo(ds, options)
        assert text, f"ogrinfo failed on {path}"
        try:
            return json.loads(ctypes.string_at(text).decode())
        finally:
            lib.VSIFree(text)
    finally:
        lib.GDALVectorInfoOptionsFree(options)
        lib.GDALClose(ds)
