"""OutputSet on real rasters: valid COGs, uncut polygons, atomic commit, clean failures."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.enums
import rasterio.transform
import rasterio.warp
import shapely
import shapely.geometry

from edge_ls.errors import OutputError
from edge_ls.io import outputs as outputs_mod
from edge_ls.io.outputs import (
    FILES,
    FLOAT_NODATA,
    MASK_NODATA,
    PERCENT_NODATA,
    PERCENT_SCALE,
    PIXEL_FILES,
    OutputOptions,
    OutputSet,
)
from edge_ls.io.polygons import CONNECTIVITY
from edge_ls.io.quicklook import _TITLE_H, MASK_OUTLINE_RGB, MIN_ANNOTATED_WIDTH, NODATA_RGB
from edge_ls.pixel_math import confidence
from tests.io.gdal_overviews import gdal_levels
from tests.io.ogr import ogrinfo

THRESHOLD = 0.12
TAGS = {"EDGE_LS_MODEL": "edge-lite", "EDGE_LS_THRESHOLD": "0.12"}
#: Irregular band heights summing to RGB.byte.tif's 718 rows, like a blender finishing uneven bands.
BANDS = [100, 37, 250, 1, 200, 130]


@pytest.fixture(scope="module")
def scene(geotiffs: Path) -> dict:
    """RGB.byte.tif (EPSG:32618, nodata 0): band 1 scaled to [0, 1] as the 'probability'."""
    with rasterio.open(geotiffs / "rasterio" / "RGB.byte.tif") as src:
        band = src.read(1)
        meta = {"crs": src.crs, "transform": src.transform, "res": src.res}
    assert sum(BANDS) == band.shape[0]
    prob = (band / 255.0).astype(np.float32)
    valid = band != 0
    meta["bounds"] = rasterio.transform.array_bounds(band.shape[0], band.shape[1], meta["transform"])
    meta["bounds"] = (meta["bounds"][0], meta["bounds"][1], meta["bounds"][2], meta["bounds"][3])
    return {**meta, "prob": prob, "valid": valid, "height": band.shape[0], "width": band.shape[1]}


def open_set(out_dir: Path, scene: dict, **options) -> OutputSet:
    return OutputSet(
        out_dir,
        width=scene["width"],
        height=scene["height"],
        crs=scene["crs"],
        transform=scene["transform"],
        georeferenced=True,
        pixel_area_m2=scene["res"][0] * scene["res"][1],
        options=OutputOptions(threshold=THRESHOLD, **{"tags": TAGS, **options}),
    )


def write_all(out: OutputSet, prob: np.ndarray, valid: np.ndarray, bands: list[int]) -> None:
    row = 0
    for h in bands:
        out.write_rows(row, prob[row : row + h], valid[row : row + h])
        row += h


def whole_mask_components(prob: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pixel counts of the connected regions of the whole mask, labelled in one go."""
    mask = valid & (prob >= THRESHOLD)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=CONNECTIVITY)
    return np.bincount(labels.ravel())[1:]


def leftovers(out_dir: Path) -> list[str]:
    """Every entry but the committed set's pointer and the version folder it names."""
    pointer = out_dir / ".current"
    current = os.readlink(pointer) if pointer.is_symlink() else None
    return sorted(p.name for p in out_dir.iterdir() if p.name not in (".current", current))


def contents(out_dir: Path) -> dict[str, bytes]:
    """What a reader sees: each name's bytes (through the links), and any leftover folder."""
    return {n: b"" if (out_dir / n).is_dir() else (out_dir / n).read_bytes() for n in leftovers(out_dir)}


@pytest.fixture(scope="module")
def committed(scene: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out_dir = tmp_path_factory.mktemp("run") / "out"
    with open_set(out_dir, scene) as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.finalize()  # the detections count is final once the vectorizer thread is done
        stats = out.stats
        paths = out.commit({"scene": "RGB.byte.tif", "model": Path("/models/x.onnx")})
    return {"dir": out_dir, "paths": paths, "stats": stats}


def test_commit_moves_exactly_the_outputs_into_place(committed: dict) -> None:
    out_dir = committed["dir"]
    assert leftovers(out_dir) == sorted(FILES.values())  # no temp folder, no intermediates
    assert committed["paths"] == {name: out_dir / file for name, file in FILES.items()}
    report = json.loads((out_dir / "report.json").read_text())
    assert report["scene"] == "RGB.byte.tif" and report["model"] == "/models/x.onnx"
    assert report["outputs"] == list(FILES.values())
    assert report["output_stats"]["detections"] == committed["stats"]["detections"] > 0


@pytest.fixture(scope="module")
def committed_float(scene: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The same scene with ``layers="float32"``."""
    out_dir = tmp_path_factory.mktemp("run_float") / "out"
    with open_set(out_dir, scene, layers="float32") as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.commit({})
    return {"dir": out_dir}


def percent(values: np.ndarray) -> np.ndarray:
    """The percent encoding, written independently of outputs.py: round half up of 100 x value."""
    return np.floor(values.astype(np.float64) * 100 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("layers", ["percent", "float32"])
@pytest.mark.parametrize(
    ("name", "resampling"),
    [("probability.tif", "average"), ("mask.tif", "mode"), ("confidence.tif", "average")],
)
def test_rasters_are_cogs_on_the_input_grid(request, scene, layers, name, resampling) -> None:
    folder = request.getfixturevalue("committed" if layers == "percent" else "committed_float")["dir"]
    dtype, nodata, scale = {
        ("mask.tif", "percent"): ("uint8", MASK_NODATA, 1.0),
        ("mask.tif", "float32"): ("uint8", MASK_NODATA, 1.0),
        ("probability.tif", "percent"): ("uint8", PERCENT_NODATA, PERCENT_SCALE),
        ("confidence.tif", "percent"): ("uint8", PERCENT_NODATA, PERCENT_SCALE),
    }.get((name, layers), ("float32", FLOAT_NODATA, 1.0))
    with rasterio.open(folder / name) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ds.profile["tiled"] and ds.block_shapes == [(512, 512)]
        assert ds.compression is not None
        assert ds.overviews(1) == [2]  # 791 x 718 -> one level down to under a tile
        assert ds.dtypes[0] == dtype and ds.nodata == nodata
        assert ds.scales == (scale,) and ds.offsets == (0.0,)  # GIS unscale percent -> [0, 1]
        assert ds.crs == scene["crs"] and ds.transform == scene["transform"]
        assert (ds.width, ds.height) == (scene["width"], scene["height"])
        data = ds.read(1)
        overview = ds.read(1, out_shape=(ds.height // 2, ds.width // 2))
    valid, prob = scene["valid"], scene["prob"]
    assert (data[~valid] == nodata).all() and (data[valid] != nodata).all()
    expected = {
        "probability.tif": prob,
        "mask.tif": (prob >= THRESHOLD).astype(np.uint8),
        "confidence.tif": confidence(prob, THRESHOLD),
    }[name]
    if dtype == "uint8" and name != "mask.tif":
        expected = percent(expected)
    np.testing.assert_array_equal(data[valid], expected[valid])
    if name == "mask.tif":
        assert set(np.unique(overview)) <= {0, 1, MASK_NODATA}  # mode overviews stay classes
    else:
        inside = overview[overview != nodata] * scale
        assert inside.min() >= 0.0 and inside.max() <= 1.0  # nodata never averaged in


@pytest.mark.parametrize("layers", ["percent", "float32"])
@pytest.mark.parametrize(("name", "resampling"), [("probability.tif", "AVERAGE"), ("mask.tif", "MODE")])
def test_streamed_overviews_are_the_ones_gdal_builds(request, layers, name, resampling) -> None:
    """The overview levels are reduced while the rows stream (edge_ls.io.overviews); the COG must hold
    what GDAL's own COG copy would have built from the full-resolution band (791 x 718: odd sizes)."""
    folder = request.getfixturevalue("committed" if layers == "percent" else "committed_float")["dir"]
    with rasterio.open(folder / name) as ds:
        data, nodata = ds.read(1), ds.nodata
    with rasterio.open(folder / name, overview_level=0) as ds:
        ours = ds.read(1)
    (theirs,) = gdal_levels(data, nodata, resampling)
    np.testing.assert_array_equal(ours, theirs)


def test_percent_layers_round_to_the_nearest_percent_and_keep_the_mask_exact(committed, committed_float):
    """Percent = float to within half a percent; the mask is decided before rounding, so it is identical."""
    for name in ("probability.tif", "confidence.tif"):
        with rasterio.open(committed["dir"] / name) as a, rasterio.open(committed_float["dir"] / name) as b:
            coded, exact = a.read(1, masked=True), b.read(1, masked=True)
        np.testing.assert_array_equal(coded.mask, exact.mask)
        err = np.abs(coded.compressed() * PERCENT_SCALE - exact.compressed())
        assert err.max() <= 0.005 + 1e-6
    masks = [committed["dir"] / "mask.tif", committed_float["dir"] / "mask.tif"]
    with rasterio.open(masks[0]) as a, rasterio.open(masks[1]) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    assert (committed["dir"] / "detections.geojson").read_text() == (
        committed_float["dir"] / "detections.geojson"
    ).read_text()


def test_unknown_layer_encoding_is_refused() -> None:
    with pytest.raises(ValueError, match="layers must be one of"):
        OutputOptions(threshold=0.5, layers="uint16")


def gpkg_features(path: Path) -> tuple[list[shapely.Geometry], list[tuple], int]:
    """The feature table of a GeoPackage read with sqlite3 alone: geometries (GP header checked and
    skipped), attribute rows, and the layer's srs_id."""
    import sqlite3

    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        (srs_id,) = db.execute(
            "SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = 'detections'"
        ).fetchone()
        rows = db.execute(
            "SELECT geom, area_m2, mean_prob, max_prob, mean_confidence FROM detections ORDER BY fid"
        )
        geoms, values = [], []
        for blob, *rest in rows:
            assert blob[:2] == b"GP" and blob[3] == 0b11  # little endian, xy envelope (4 doubles)
            geoms.append(shapely.from_wkb(blob[8 + 32 :]))
            values.append(tuple(rest))
    return geoms, values, srs_id


def test_geojson_is_rfc7946_wgs84_with_one_feature_per_uncut_region(committed: dict, scene: dict) -> None:
    collection = json.loads((committed["dir"] / "detections.geojson").read_text())
    assert collection["type"] == "FeatureCollection"
    assert "crs" not in collection  # RFC 7946 dropped it: WGS 84 lon/lat, always
    features = collection["features"]
    counts = whole_mask_components(scene["prob"], scene["valid"])
    # Same count as labelling the whole mask at once: no region was cut at a band border.
    assert len(features) == counts.size
    pixel_area = scene["res"][0] * scene["res"][1]
    areas = sorted(f["properties"]["area_m2"] for f in features)
    # Areas come from the projected CRS (pixel count x pixel area in m²), never from degrees.
    np.testing.assert_allclose(areas, np.sort(counts) * pixel_area, rtol=1e-12)
    assert [f["properties"]["id"] for f in features] == list(range(1, len(features) + 1))
    west, south, east, north = rasterio.warp.transform_bounds(scene["crs"], "EPSG:4326", *scene["bounds"])
    for feature in features:
        props = feature["properties"]
        assert set(props) == {"id", "area_m2", "mean_prob", "max_prob", "mean_confidence"}
        assert THRESHOLD - 1e-6 <= props["mean_prob"] <= props["max_prob"] <= 1.0
        assert 0.0 <= props["mean_confidence"] <= 1.0
        geometry = feature["geometry"]
        assert geometry["type"] == "Polygon"
        shell, *holes = geometry["coordinates"]
        assert shapely.LinearRing(shell).is_ccw  # right-hand rule: exterior counterclockwise...
        assert not any(shapely.LinearRing(h).is_ccw for h in holes)  # ...holes clockwise
        for lon, lat in shell:
            assert west - 1e-6 <= lon <= east + 1e-6 and south - 1e-6 <= lat <= north + 1e-6  # degrees
            assert round(lon, 7) == lon and round(lat, 7) == lat  # 7 decimals
    # GDAL's own GeoJSON driver reads it as EPSG:4326 lon/lat with every feature.
    info = ogrinfo(committed["dir"] / "detections.geojson")["layers"][0]
    assert info["featureCount"] == len(features)
    assert info["geometryFields"][0]["coordinateSystem"]["projjson"]["id"]["code"] == 4326


def test_geopackage_holds_the_same_regions_in_the_input_crs(committed: dict, scene: dict) -> None:
    geoms, values, srs_id = gpkg_features(committed["dir"] / "detections.gpkg")
    features = json.loads((committed["dir"] / "detections.geojson").read_text())["features"]
    assert srs_id == 32618 and len(geoms) == len(features)
    assert [v[0] for v in values] == [f["properties"]["area_m2"] for f in features]
    left, bottom, right, top = scene["bounds"]
    for geom, feature in zip(geoms, features, strict=True):
        assert geom.geom_type == "MultiPolygon"
        minx, miny, maxx, maxy = geom.bounds
        assert left <= minx and maxx <= right and bottom <= miny and maxy <= top  # metres of UTM 18N
        # The GeoJSON polygon is this one reprojected: same place to well under a pixel.
        back = rasterio.warp.transform_geom("EPSG:4326", scene["crs"], feature["geometry"])
        assert shapely.geometry.shape(back).symmetric_difference(geom).area < 0.05 * geom.area + 1.0
    # GDAL/OGR (what QGIS uses) opens it as a GeoPackage in EPSG:32618 with the fields as columns.
    info = ogrinfo(committed["dir"] / "detections.gpkg")
    assert info["driverShortName"] == "GPKG"
    layer = info["layers"][0]
    assert layer["featureCount"] == len(geoms)
    assert layer["geometryFields"][0]["type"] == "MultiPolygon"
    assert layer["geometryFields"][0]["coordinateSystem"]["projjson"]["id"]["code"] == 32618
    assert [f["name"] for f in layer["fields"]] == ["area_m2", "mean_prob", "max_prob", "mean_confidence"]
    extent = layer["geometryFields"][0]["extent"]
    assert left <= extent[0] <= extent[2] <= right


def test_cogs_describe_themselves(committed: dict) -> None:
    """Band description, scale, nodata, tags and (mask) a colour table travel inside each COG."""
    tags = {"EDGE_LS_MODEL": "edge-lite", "EDGE_LS_THRESHOLD": "0.12"}
    for name, nodata in [("probability.tif", PERCENT_NODATA), ("mask.tif", MASK_NODATA)]:
        with rasterio.open(committed["dir"] / name) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert ds.descriptions[0] and ds.nodata == nodata
            assert {k: ds.tags()[k] for k in tags} == tags
    with rasterio.open(committed["dir"] / "probability.tif") as ds:
        assert "probability" in ds.descriptions[0] and ds.scales == (PERCENT_SCALE,) and ds.offsets == (0.0,)
    with rasterio.open(committed["dir"] / "mask.tif") as ds:
        assert ds.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert ds.colormap(1)[1][:3] == (230, 30, 30)


def test_probability_style_is_a_qgis_pseudocolor_on_0_to_1(committed: dict) -> None:
    import xml.etree.ElementTree as ET

    root = ET.parse(committed["dir"] / "probability.qml").getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "singlebandpseudocolor" and renderer.get("band") == "1"
    shader = renderer.find("rastershader/colorrampshader")
    values = [float(item.get("value")) for item in shader.findall("item")]
    assert values[0] == 0.0 and values[-1] == 1.0 and values == sorted(values)
    assert (shader.get("minimumValue"), shader.get("maximumValue")) == ("0", "1")


def test_region_spanning_three_bands_is_one_feature(scene: dict, tmp_path: Path) -> None:
    prob, valid = scene["prob"], scene["valid"]
    mask = valid & (prob >= THRESHOLD)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=CONNECTIVITY)
    counts = np.bincount(labels.ravel())
    biggest = int(np.argmax(counts[1:]) + 1)
    rows = np.nonzero((labels == biggest).any(axis=1))[0]
    band = max(1, (rows[-1] - rows[0] + 1) // 3)
    assert rows[-1] // band - rows[0] // band >= 2  # crosses at least three bands
    heights = [min(band, scene["height"] - r) for r in range(0, scene["height"], band)]
    with open_set(tmp_path, scene) as out:
        write_all(out, prob, valid, heights)
        out.commit({})
    features = json.loads((tmp_path / "detections.geojson").read_text())["features"]
    area = counts[biggest] * scene["res"][0] * scene["res"][1]
    spanning = [f for f in features if f["properties"]["area_m2"] == pytest.approx(area)]
    assert len(spanning) == 1 and spanning[0]["geometry"]["type"] == "Polygon"
    assert len(features) == counts.size - 1


def test_min_area_drops_small_regions(scene: dict, tmp_path: Path) -> None:
    pixel_area = scene["res"][0] * scene["res"][1]
    with open_set(tmp_path, scene, min_area_m2=25 * pixel_area) as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.commit({})
    features = json.loads((tmp_path / "detections.geojson").read_text())["features"]
    counts = whole_mask_components(scene["prob"], scene["valid"])
    assert len(features) == int((counts >= 25).sum()) < counts.size
    assert min(f["properties"]["area_m2"] for f in features) >= 25 * pixel_area - 1e-6


def map_part(png: np.ndarray, h: int, w: int) -> np.ndarray:
    """The map inside an annotated quicklook (title above, legend below, centred), as RGB."""
    x0 = (png.shape[1] - w) // 2
    return png[_TITLE_H : _TITLE_H + h, x0 : x0 + w, ::-1]


def test_quicklook_is_a_downsampled_rgb_overlay(committed: dict, scene: dict, tmp_path: Path) -> None:
    png = cv2.imread(str(committed["dir"] / "quicklook.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape[1] == max(scene["width"], MIN_ANNOTATED_WIDTH)  # smaller than 1024: not upsampled
    rgb = map_part(png, scene["height"], scene["width"])
    assert tuple(rgb[0, 0]) == NODATA_RGB  # RGB.byte's corner is nodata
    assert (rgb == MASK_OUTLINE_RGB).all(axis=-1).sum() > 100  # mask outlines drawn

    # A smaller quicklook over a background image supplied by the caller.
    calls = []

    def background(h: int, w: int) -> np.ndarray:
        calls.append((h, w))
        return np.full((h, w, 3), 200, dtype=np.uint8)

    with open_set(tmp_path, scene, quicklook_max_size=256) as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.commit({}, background=background)
    png = cv2.imread(str(tmp_path / "quicklook.png"))
    assert calls == [(232, 256)] and png.shape[1] == MIN_ANNOTATED_WIDTH
    small = map_part(png, 232, 256)
    assert tuple(small[0, 0]) == (100, 100, 100)  # nodata shows the background dimmed


def test_quicklook_has_title_legend_and_scale_bar(scene: dict, tmp_path: Path) -> None:
    """Title, colour bar and scale bar are drawn (ink where they belong); no scale bar without metres."""
    with open_set(tmp_path / "geo", scene, title="RGB.byte.tif | edge-lite | 2026-12-04") as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.commit({})
    png = cv2.imread(str(tmp_path / "geo" / "quicklook.png"))[..., ::-1]
    h = scene["height"]
    title, legend = png[:_TITLE_H], png[_TITLE_H + h :]
    assert (title.sum(axis=-1) < 200).sum() > 200  # dark text on white
    assert (legend == MASK_OUTLINE_RGB).all(axis=-1).any()  # threshold marker / outline swatch
    # The colour bar holds the ramp: from near black to pale yellow, left to right.
    bar = legend[13]
    assert bar[10].sum() < 150 and bar[180].sum() > 500
    # Scale bar: a solid dark run right-aligned in the legend whose length is a 1-2-5 ground length.
    run = (legend[14] < 60).all(axis=-1)[MIN_ANNOTATED_WIDTH // 2 :]
    assert run.sum() > 20


def test_nan_probability_is_nodata_everywhere(scene: dict, tmp_path: Path) -> None:
    prob = scene["prob"].copy()
    prob[300:320, 300:320] = np.nan  # valid says yes, but there is no number
    with open_set(tmp_path, scene) as out:
        write_all(out, prob, scene["valid"], BANDS)
        out.commit({})
    for name, nodata in [("probability.tif", PERCENT_NODATA), ("mask.tif", MASK_NODATA)]:
        with rasterio.open(tmp_path / name) as ds:
            assert (ds.read(1)[300:320, 300:320] == nodata).all()


def test_nan_coded_rows_without_a_validity_array_give_the_same_outputs(scene: dict, tmp_path: Path) -> None:
    """``valid=None`` (the pipeline's NaN-coded bands) writes what an explicit validity array writes."""
    nan_coded = np.where(scene["valid"], scene["prob"], np.float32(np.nan))
    with open_set(tmp_path / "explicit", scene) as out:
        write_all(out, scene["prob"], scene["valid"], BANDS)
        out.commit({})
    with open_set(tmp_path / "nan", scene) as out:
        row = 0
        for h in BANDS:
            out.write_rows(row, nan_coded[row : row + h])
            row += h
        out.commit({})
    for name in ("probability.tif", "mask.tif", "confidence.tif"):
        with rasterio.open(tmp_path / "explicit" / name) as a, rasterio.open(tmp_path / "nan" / name) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))
    assert (tmp_path / "explicit" / "detections.geojson").read_text() == (
        tmp_path / "nan" / "detections.geojson"
    ).read_text()


def test_not_georeferenced_input_writes_pixel_space(real_data: Path, tmp_path: Path) -> None:
    path = sorted((real_data / "cas_unlabeled").glob("*.tiff"))[0]
    with rasterio.open(path) as src:
        band = src.read(1)
        assert src.crs is None
    prob = (band / 255.0).astype(np.float32)
    valid = np.ones_like(band, dtype=bool)
    valid[:, :16] = False  # a nodata collar
    threshold = float(np.quantile(prob, 0.8))
    with OutputSet(
        tmp_path,
        width=band.shape[1],
        height=band.shape[0],
        crs=None,
        transform=None,
        georeferenced=False,
        pixel_area_m2=None,
        options=OutputOptions(threshold=threshold),
    ) as out:
        write_all(out, prob, valid, [200, 200, 112])
        paths = out.commit({})
    assert leftovers(tmp_path) == sorted(PIXEL_FILES.values()) and set(paths) == set(PIXEL_FILES)
    with rasterio.open(tmp_path / "probability.tif") as ds:
        assert ds.crs is None and ds.transform.is_identity
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert (ds.read(1)[:, :16] == PERCENT_NODATA).all()
    # No GeoJSON: one would be read as EPSG:4326 with pixel coordinates taken for degrees.
    assert not (tmp_path / "detections.geojson").exists()
    report = json.loads((tmp_path / "report.json").read_text())
    assert (
        list(report["vectors"]) == ["detections_pixel.gpkg"]
        and "pixel" in report["vectors"]["detections_pixel.gpkg"]
    )
    mask = valid & (prob >= threshold)
    _, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=CONNECTIVITY)
    counts = np.bincount(labels.ravel())[1:]
    import sqlite3

    with sqlite3.connect(tmp_path / "detections_pixel.gpkg") as db:
        assert (
            db.execute("SELECT srs_id FROM gpkg_geometry_columns").fetchone()[0] == -1
        )  # undefined cartesian
        rows = db.execute("SELECT geom, area_px FROM detections").fetchall()
    assert len(rows) == counts.size
    assert sorted(area for _, area in rows) == sorted(counts.astype(float))  # pixels
    xs = [x for blob, _ in rows for x, _ in shapely.get_coordinates(shapely.from_wkb(blob[40:]))]
    assert min(xs) >= 16 and max(xs) <= band.shape[1]  # pixel columns, nothing in the collar
    # GDAL opens it in the GeoPackage's "undefined cartesian" engineering CRS: no EPSG, no degrees.
    layer = ogrinfo(tmp_path / "detections_pixel.gpkg")["layers"][0]
    assert layer["featureCount"] == counts.size
    wkt = layer["geometryFields"][0]["coordinateSystem"]["wkt"]
    assert wkt.startswith(("ENGCRS", "LOCAL_CS")) and "Undefined" in wkt and "EPSG" not in wkt
    assert layer["fields"][0]["name"] == "area_px"


def test_abort_leaves_nothing_and_keeps_an_earlier_run(committed: dict, scene: dict, tmp_path: Path):
    out_dir = tmp_path / "out"
    shutil.copytree(committed["dir"], out_dir, symlinks=True)
    before = contents(out_dir)
    out = open_set(out_dir, scene)
    write_all(out, scene["prob"], scene["valid"], BANDS[:3])
    assert len(leftovers(out_dir)) == len(before) + 1  # the partial folder
    out.abort()
    assert contents(out_dir) == before

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError), open_set(fresh, scene) as out:
        write_all(out, scene["prob"], scene["valid"], BANDS[:2])
        raise RuntimeError("inference failed")
    assert leftovers(fresh) == []


def test_commit_before_the_last_row_is_refused(scene: dict, tmp_path: Path) -> None:
    out = open_set(tmp_path, scene)
    write_all(out, scene["prob"], scene["valid"], BANDS[:2])
    with pytest.raises(ValueError, match="every row"):
        out.commit({})
    assert leftovers(tmp_path) == []


def test_rows_out_of_order_are_refused(scene: dict, tmp_path: Path) -> None:
    with open_set(tmp_path, scene) as out:
        out.write_rows(0, scene["prob"][:10], scene["valid"][:10])
        with pytest.raises(ValueError, match="contiguous"):
            out.write_rows(20, scene["prob"][20:30], scene["valid"][20:30])
    assert leftovers(tmp_path) == []


def test_unwritable_out_dir_fails_at_construction(scene: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError, match=r"^cannot write outputs to .*a_file/out: Not a directory$"):
        open_set(blocker / "out", scene)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_dir_fails_at_construction(scene: dict, tmp_path: Path) -> None:
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="Permission denied"):
            open_set(tmp_path, scene)
    finally:
        tmp_path.chmod(0o700)


def test_disk_full_mid_write_leaves_the_earlier_run(
    committed: dict, scene: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out_dir = tmp_path / "out"
    shutil.copytree(committed["dir"], out_dir, symlinks=True)
    before = contents(out_dir)
    real_write = outputs_mod._RawSink.write
    calls = {"n": 0}

    def write_until_full(self, row_off: int, band: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] > 7:  # the third band's second raster hits a full disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(self, row_off, band)

    monkeypatch.setattr(outputs_mod._RawSink, "write", write_until_full)
    with open_set(out_dir, scene) as out:
        with pytest.raises(OutputError) as info:
            write_all(out, scene["prob"], scene["valid"], BANDS)
        assert str(info.value) == f"cannot write outputs to {out_dir}: No space left on device"
        assert "\n" not in str(info.value)
        with pytest.raises(ValueError, match="after commit or abort"):
            out.write_rows(0, scene["prob"][:1], scene["valid"][:1])
    assert contents(out_dir) == before  # no temp folder either


_FULL_DISK_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from edge_ls.errors import OutputError
    from edge_ls.io.outputs import OutputOptions, OutputSet

    out_dir, size = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    stage = "construct"
    try:
        out = OutputSet(out_dir, width=size, height=size, crs=None, transform=None, georeferenced=False,
                        pixel_area_m2=None, options=OutputOptions(threshold=0.5, quicklook_max_size=64))
        stage = "write"
        for row in range(0, size, 250):
            h = min(250, size - row)
            # incompressible values below the threshold: big rasters, no polygons
            out.write_rows(row, rng.random((h, size), dtype=np.float32) * 0.4, np.ones((h, size), bool))
        stage = "commit"
        out.commit({})
        stage = "done"
        error = None
    except OutputError as exc:
        error = str(exc)
    print(json.dumps({"stage": stage, "error": error, "left": sorted(os.listdir(out_dir))}))
    """
)


def _run_on_small_tmpfs(tmp_path: Path, fs_bytes: int, size: int) -> dict:
    """Run an OutputSet on a real tmpfs of fs_bytes in a private mount namespace (root only)."""
    mount_point = tmp_path / "fs"
    mount_point.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(_FULL_DISK_SCRIPT)
    command = (
        f"mount -t tmpfs -o size={fs_bytes} tmpfs {mount_point} && mkdir {mount_point}/out && "
        f"{sys.executable} {script} {mount_point}/out {size}"
    )
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not available")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", command], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "mount" in proc.stderr.lower() and not proc.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_real_disk_too_small_fails_before_inference(tmp_path: Path) -> None:
    # 2000 x 2000 px need 15 MB of scratch space (3 uint8 rasters, 12 MB, and their 1000² overviews):
    # reserved at construction, so the run never starts.
    result = _run_on_small_tmpfs(tmp_path, 10 * 2**20, 2000)
    assert result["stage"] == "construct"
    assert result["error"].endswith(": No space left on device")
    assert result["left"] == []


def test_real_disk_full_while_writing_cogs(tmp_path: Path) -> None:
    # The 15 MB of scratch files (rasters and overview levels) fit, the compressed COGs (~2 x 3 MB of
    # random percent values) do not: GDAL fails inside commit.
    result = _run_on_small_tmpfs(tmp_path, 16 * 2**20, 2000)
    assert result["stage"] == "commit"
    assert result["error"].startswith(f"cannot write outputs to {tmp_path}/fs/out: No space left on device")
    assert "\n" not in result["error"]
    assert result["left"] == []  # no report.json, no temp folder


_PEAK_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, tracemalloc
    from pathlib import Path
    import numpy as np, rasterio
    from edge_ls.io.outputs import OutputOptions, OutputSet

    with rasterio.open(sys.argv[1]) as src:
        band, crs, transform = src.read(1), src.crs, src.transform
    prob, valid = (band / 255.0).astype(np.float32), band != 0
    for reps in (2, 8):
        height, width = band.shape[0] * reps, band.shape[1]
        with tempfile.TemporaryDirectory() as tmp:
            out = OutputSet(Path(tmp), width=width, height=height, crs=crs, transform=transform,
                            georeferenced=True, pixel_area_m2=1.0, options=OutputOptions(threshold=0.3))
            tracemalloc.start()
            for row in range(0, height, 64):
                rows = np.arange(row, min(row + 64, height)) % band.shape[0]
                out.write_rows(row, prob[rows], valid[rows])
            print(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            out.abort()
    """
)


def test_memory_stays_per_band(geotiffs: Path, scene: dict, tmp_path: Path) -> None:
    """Peak Python memory does not grow with the scene: 4x the rows, (almost) the same peak.

    Measured in a fresh interpreter so that no other test's threads or garbage count.
    """
    script = tmp_path / "peak.py"
    script.write_text(_PEAK_MEMORY_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(geotiffs / "rasterio" / "RGB.byte.tif")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    small, large = (int(line) for line in proc.stdout.split())
    large_scene_float32 = scene["height"] * 8 * scene["width"] * 4
    assert large < 1.5 * small, f"peak grew with the scene: {small / 2**20:.1f} -> {large / 2**20:.1f} MiB"
    assert large < large_scene_float32 / 4


def test_temporary_folders_of_killed_runs_are_removed_live_ones_kept(tmp_path: Path) -> None:
    """A run killed with SIGKILL leaves its .partial folder; the next run in that folder removes it."""
    from edge_ls.io.outputs import remove_stale_partials

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    ).stdout.strip()
    stale = tmp_path / f".edge_ls.abc123.partial-{dead}"
    (stale / "sub").mkdir(parents=True)
    live = tmp_path / f".edge_ls.def456.partial-{os.getpid()}"
    live.mkdir()
    unrelated = tmp_path / "keep.partial-1"
    unrelated.mkdir()
    assert remove_stale_partials(tmp_path) == [stale]
    assert not stale.exists() and live.is_dir() and unrelated.is_dir()
