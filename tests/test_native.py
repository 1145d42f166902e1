"""Cross-check of the native host library (native/, built with CMake) against the runtime's numpy path.

The CUDA kernels run the same header functions and index helpers as this library, so agreement here
covers all of the device code's math except the launch itself (there is no GPU on these machines).
Set ``EDGE_LS_NATIVE_LIB`` to a built ``libedge_ls_native.so`` to test that one instead of building.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from edge_ls import pixel_math
from edge_ls.blend import SCALE, RowBandBlender
from edge_ls.tiling import pad_tile, plan_tiles

REPO = Path(__file__).resolve().parents[1]
#: float32 agreement asked of native vs numpy where a transcendental (exp, sin) is involved: libm and
#: numpy may differ by an ulp. Preprocessing has none and is checked bit for bit.
ATOL = 1e-5

_f32 = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i32 = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_u8 = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
_u16 = np.ctypeslib.ndpointer(np.uint16, flags="C_CONTIGUOUS")
_c_i32, _c_i64, _c_f = ctypes.c_int32, ctypes.c_int64, ctypes.c_float
_PREPROCESS = [_c_i32, _c_i32, _c_i32, _c_i32, _f32, _f32, _f32, _f32, _f32]
#: Signatures of native/include/edge_ls/native.h (optional pointers as c_void_p, so None passes NULL).
_SIGNATURES = {
    "edge_ls_abi_version": [],
    "edge_ls_preprocess_u8": [_u8, *_PREPROCESS],
    "edge_ls_preprocess_u16": [_u16, *_PREPROCESS],
    "edge_ls_sigmoid": [_f32, _c_i64, _c_f, _f32],
    "edge_ls_hann_window": [_c_i32, _f32],
    "edge_ls_blend_tiles": [
        _f32,
        _c_i32,
        _c_i32,
        _i32,
        ctypes.c_void_p,
        _c_i32,
        _c_f,
        ctypes.c_void_p,
        _f32,
        _f32,
        _c_i64,
        _c_i64,
    ],
    "edge_ls_blend_resolve": [_f32, _f32, _c_i64, _f32],
    "edge_ls_confidence": [_f32, _c_i64, _c_f, _f32],
}


def _cxx_compiler() -> str | None:
    return os.environ.get("CXX") or next((c for c in ("c++", "g++", "clang++") if shutil.which(c)), None)


def _build(build_dir: Path) -> Path:
    """Configure and build only the host library (no CUDA, no ctest: .ci/native.sh does those)."""
    configure = [
        "cmake",
        "-S",
        str(REPO),
        "-B",
        str(build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        "-DEDGE_LS_CUDA=OFF",
        "-DEDGE_LS_BUILD_TESTS=OFF",
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "--target", "edge_ls_native", "-j", "2"]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.fail(f"native build failed: {' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    found = sorted((build_dir / "lib").glob("*edge_ls_native*"))
    if not found:
        pytest.fail(f"cmake built no edge_ls_native library under {build_dir / 'lib'}")
    return found[0]


@pytest.fixture(scope="session")
def native(tmp_path_factory: pytest.TempPathFactory) -> ctypes.CDLL:
    """The host library, built once per session into a temporary directory (about 3 s)."""
    given = os.environ.get("EDGE_LS_NATIVE_LIB")
    if given:
        path = Path(given)
    else:
        if shutil.which("cmake") is None:
            pytest.skip("cmake not found: the native library cannot be built here")
        if _cxx_compiler() is None:
            pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX): the native library cannot be built")
        path = _build(tmp_path_factory.mktemp("native-build"))
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = argtypes, ctypes.c_int
    lib.edge_ls_status_message.argtypes, lib.edge_ls_status_message.restype = [ctypes.c_int], ctypes.c_char_p
    assert lib.edge_ls_abi_version() == 1
    return lib


def _ok(lib: ctypes.CDLL, status: int) -> None:
    assert status == 0, lib.edge_ls_status_message(status).decode()


def _preprocess(lib: ctypes.CDLL, nhwc: np.ndarray, offset, scale, mean, std) -> np.ndarray:
    n, h, w, c = nhwc.shape
    out = np.empty((n, c, h, w), dtype=np.float32)
    fn = lib.edge_ls_preprocess_u8 if nhwc.dtype == np.uint8 else lib.edge_ls_preprocess_u16
    params = [np.ascontiguousarray(p, dtype=np.float32) for p in (offset, scale, mean, std)]
    _ok(lib, fn(np.ascontiguousarray(nhwc), n, h, w, c, *params, out))
    return out


def _numpy_preprocess(nhwc: np.ndarray, offset, scale, mean, std) -> np.ndarray:
    return np.stack(
        [
            pixel_math.normalize(pixel_math.to_unit_range(img.transpose(2, 0, 1), offset, scale), mean, std)
            for img in nhwc
        ]
    )


@pytest.fixture(scope="session")
def cas_rgb(real_data: Path) -> np.ndarray:
    """Three real CAS Hokkaido tiles, N x 512 x 512 x 3 RGB uint8 (interleaved, as decoded)."""
    paths = sorted((real_data / "cas_hokkaido" / "images").glob("*.png"))[:3]
    return np.stack([cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths])


def _read_hwc(path: Path, window: rasterio.windows.Window | None = None) -> np.ndarray:
    with rasterio.open(path) as src:
        return np.ascontiguousarray(src.read(window=window).transpose(1, 2, 0))


def test_preprocess_uint8_matches_numpy_on_real_tiles(native: ctypes.CDLL, cas_rgb: np.ndarray) -> None:
    unit = cas_rgb.reshape(-1, 3) / 255.0
    offset, scale = np.zeros(3), np.full(3, 1 / 255)  # input_range "8bit"
    mean, std = unit.mean(axis=0), unit.std(axis=0)
    got = _preprocess(native, cas_rgb, offset, scale, mean, std)
    want = _numpy_preprocess(cas_rgb, offset, scale, mean, std)
    assert got.shape == (3, 3, 512, 512)
    np.testing.assert_array_equal(got, want)  # same IEEE float32 operations in the same order
    assert abs(float(got.mean())) < 0.05  # standardized with the tiles' own statistics


def test_preprocess_uint16_single_band_cog_with_clipping_stretch(native: ctypes.CDLL, geotiffs: Path) -> None:
    cog = _read_hwc(geotiffs / "rio-tiler" / "cog.tif", rasterio.windows.Window(1000, 1000, 512, 384))[None]
    lo, hi = np.percentile(cog, [2, 98])  # a percentile stretch: values clip at both ends
    offset, scale = np.array([lo]), np.array([1.0 / (hi - lo)])
    mean, std = np.array([0.45]), np.array([0.2])
    got = _preprocess(native, cog, offset, scale, mean, std)
    np.testing.assert_array_equal(got, _numpy_preprocess(cog, offset, scale, mean, std))
    assert got.min() == pytest.approx(-0.45 / 0.2) and got.max() == pytest.approx(0.55 / 0.2)


def test_preprocess_uint16_four_bands_keeps_band_order(native: ctypes.CDLL, geotiffs: Path) -> None:
    rgba = _read_hwc(geotiffs / "rasterio" / "RGBA.uint16.tif")[None]  # 411 x 634 x 4, reflectance x 1e4
    offset, scale = np.zeros(4), np.array([1e-4, 1e-4, 1e-4, 1.0 / 65535])
    mean, std = np.array([0.1, 0.2, 0.3, 0.5]), np.array([0.1, 0.15, 0.2, 0.5])
    got = _preprocess(native, rgba, offset, scale, mean, std)
    want = _numpy_preprocess(rgba, offset, scale, mean, std)
    np.testing.assert_array_equal(got, want)
    # Bands differ in content and parameters: a swapped band would not match.
    assert not np.allclose(got[0, 0], got[0, 1], atol=1e-3)


def test_sigmoid_and_hann_window_match_numpy(native: ctypes.CDLL, cas_rgb: np.ndarray) -> None:
    z = _vdvi_logits(cas_rgb[0].transpose(2, 0, 1).astype(np.float32)).ravel()
    z = np.concatenate([z, np.array([-1000, -88.8, 0, 88.8, 1000, np.nan], dtype=np.float32)])
    out = np.empty_like(z)
    _ok(native, native.edge_ls_sigmoid(z, z.size, 1.7, out))
    np.testing.assert_allclose(out, pixel_math.sigmoid(z, 1.7), rtol=0, atol=ATOL, equal_nan=True)
    for size in (1, 7, 160, 512, 1024):
        window = np.empty(size, dtype=np.float32)
        _ok(native, native.edge_ls_hann_window(size, window))
        np.testing.assert_allclose(window, pixel_math.hann_window(size), rtol=0, atol=1e-7)


def _vdvi_logits(chw: np.ndarray) -> np.ndarray:
    """Context-dependent logits from real pixels: how far below the tile's mean greenness (VDVI) a
    pixel is, so overlapping tiles disagree like a CNN's predictions do."""
    r, g, b = chw[0], chw[1], chw[2]
    vdvi = (2 * g - r - b) / np.maximum(2 * g + r + b, 1.0)
    return (40.0 * (vdvi.mean() - vdvi)).astype(np.float32)


def _numpy_accumulate(tiles, origins, valid, size, temperature, apply_sigmoid, shape):
    accum, wsum = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    weights = pixel_math.blend_weights(size)
    for tile, (y0, x0), ok in zip(tiles, origins, valid, strict=True):
        prob = pixel_math.sigmoid(tile, temperature) if apply_sigmoid else tile
        h, w = min(size, shape[0] - y0), min(size, shape[1] - x0)
        keep = ok[:h, :w].astype(bool)
        accum[y0 : y0 + h, x0 : x0 + w] += np.where(keep, (weights * prob)[:h, :w], np.float32(0))
        wsum[y0 : y0 + h, x0 : x0 + w] += np.where(keep, weights[:h, :w], np.float32(0))
    return accum, wsum


def _native_blend(lib, tiles, origins, valid, size, temperature, apply_sigmoid, shape):
    # One guard row past the canvas: a tile reaching past the bottom must not write there.
    accum, wsum = (np.zeros((shape[0] + 1, shape[1]), np.float32) for _ in range(2))
    tiles = np.ascontiguousarray(tiles, dtype=np.float32)
    valid = np.ascontiguousarray(valid, dtype=np.uint8)
    origins = np.ascontiguousarray(origins, dtype=np.int32)
    _ok(
        lib,
        lib.edge_ls_blend_tiles(
            tiles,
            len(tiles),
            size,
            origins,
            valid.ctypes.data,
            int(apply_sigmoid),
            temperature,
            None,
            accum,
            wsum,
            shape[0],
            shape[1],
        ),
    )
    assert not accum[-1].any() and not wsum[-1].any(), "blend wrote past the canvas"
    return accum[:-1], wsum[:-1]


def test_blend_of_real_logits_matches_numpy_and_the_runtime_blender(
    native: ctypes.CDLL, cas_rgb: np.ndarray
) -> None:
    image = cas_rgb[1].transpose(2, 0, 1).astype(np.float32)  # 3 x 512 x 512
    size, temperature = 160, 1.5
    plan = plan_tiles(512, 512, size, overlap=0.3)  # stride 112: the last row/column reach past the raster
    assert (plan.rows - 1) * plan.stride + size > 512
    collar = np.zeros((512, 512), dtype=bool)
    collar[:, 40:] = True  # a nodata collar on the left, as a raster with a nodata border has
    tiles, origins, valid = [], [], []
    for t in plan:
        tiles.append(_vdvi_logits(pad_tile(image[:, t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width], size)))
        origins.append((t.y0, t.x0))
        # Padding past the raster is marked valid: cropping it is the blend's job, not the mask's.
        valid.append(
            np.pad(
                collar[t.y0 : t.y0 + t.height, t.x0 : t.x0 + t.width],
                ((0, size - t.height), (0, size - t.width)),
                constant_values=True,
            )
        )
    tiles_a, valid_a = np.stack(tiles), np.stack(valid)

    accum, wsum = _native_blend(native, tiles_a, origins, valid_a, size, temperature, True, (512, 512))
    want_accum, want_wsum = _numpy_accumulate(tiles_a, origins, valid_a, size, temperature, True, (512, 512))
    np.testing.assert_allclose(accum, want_accum, rtol=0, atol=ATOL)
    np.testing.assert_allclose(wsum, want_wsum, rtol=0, atol=ATOL)
    assert (wsum[:, :40] == 0).all() and (wsum[:, 40:] > 0).all()

    prob = np.empty_like(accum)
    _ok(native, native.edge_ls_blend_resolve(accum, wsum, accum.size, prob))
    np.testing.assert_allclose(
        prob, np.where(wsum > 0, want_accum / np.maximum(want_wsum, 1e-30), 0), rtol=0, atol=ATOL
    )
    assert (prob[:, :40] == 0).all()

    # The runtime's own blender (separable, pre-normalized weights) gives the same picture.
    blender = RowBandBlender(plan)
    rows = []
    for t, z, ok in zip(plan, tiles_a, valid_a, strict=True):
        rows += blender.add(t, pixel_math.sigmoid(z, temperature), ok[: t.height, : t.width].astype(bool))
    blended = np.concatenate([band.prob for band in rows])
    assert blended.shape == (512, 512)
    np.testing.assert_array_equal(np.isnan(blended), ~collar)  # the runtime carries nodata as NaN
    # ... within the runtime canvas's fixed point: each of the (up to 4) covering tiles rounds by half a unit
    np.testing.assert_allclose(prob, np.nan_to_num(blended, nan=0.0), rtol=0, atol=ATOL + 4 * 0.5 / SCALE)
    assert 0.05 < prob[:, 40:].mean() < 0.95  # real content, not a saturated map


def test_blend_in_probability_mode_with_the_bundled_model(native: ctypes.CDLL, cas_rgb: np.ndarray) -> None:
    """edge-nano ends in a sigmoid: native preprocessing feeds it, its probabilities are blended as is."""
    import onnxruntime as ort

    from edge_ls.artifact import read_spec
    from edge_ls.models.registry import resolve

    path = resolve("edge-nano")
    spec = read_spec(path)
    assert spec.activation == "sigmoid"
    size = 256
    crops = np.ascontiguousarray(cas_rgb[2][None, : size + 128, : size + 128])  # 384 x 384 canvas, 4 tiles
    x = _preprocess(native, crops, np.zeros(3), np.full(3, 1 / 255), np.array(spec.mean), np.array(spec.std))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    origins = [(0, 0), (0, 128), (128, 0), (128, 128)]
    batch = np.stack([x[0, :, y : y + size, x0 : x0 + size] for y, x0 in origins])
    probs = session.run(None, {session.get_inputs()[0].name: batch})[0][:, 0]
    valid = np.ones(probs.shape, dtype=np.uint8)
    shape = (size + 128, size + 128)
    accum, wsum = _native_blend(native, probs, origins, valid, size, 1.0, False, shape)
    want_accum, want_wsum = _numpy_accumulate(probs, origins, valid, size, 1.0, False, shape)
    np.testing.assert_allclose(accum, want_accum, rtol=0, atol=ATOL)
    np.testing.assert_allclose(wsum, want_wsum, rtol=0, atol=ATOL)


def test_confidence_matches_numpy_on_real_probabilities(native: ctypes.CDLL, cas_rgb: np.ndarray) -> None:
    prob = pixel_math.sigmoid(_vdvi_logits(cas_rgb[0].transpose(2, 0, 1).astype(np.float32))).ravel()
    prob = np.concatenate([prob, np.array([0.0, 0.3, 0.5, 1.0], dtype=np.float32)])
    out = np.empty_like(prob)
    for threshold in (0.5, 0.3, 0.85):
        _ok(native, native.edge_ls_confidence(prob, prob.size, threshold, out))
        np.testing.assert_allclose(out, pixel_math.confidence(prob, threshold), rtol=0, atol=ATOL)
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_bad_parameters_are_refused_with_a_status(native: ctypes.CDLL) -> None:
    img = np.zeros((1, 2, 2, 1), dtype=np.uint8)
    out = np.empty((1, 1, 2, 2), dtype=np.float32)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    status = native.edge_ls_preprocess_u8(img, 1, 2, 2, 1, zero, one, zero, zero, out)  # std = 0
    assert status == -3 and b"std > 0" in native.edge_ls_status_message(status)
    p = np.full(4, 0.5, dtype=np.float32)
    assert native.edge_ls_confidence(p, 4, 1.0, p) == -3
    assert native.edge_ls_sigmoid(p, 4, 0.0, p) == -3
