"""The streaming vectorizer must give exactly what vectorizing the whole stitched mask at once gives."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.features
import shapely
import shapely.affinity
from affine import Affine
from shapely.geometry import shape

from edge_ls.io import polygons as polygons_mod
from edge_ls.io.polygons import CONNECTIVITY, StreamingPolygonizer

THRESHOLD = 0.12


@pytest.fixture(scope="module")
def landsat(geotiffs: Path) -> dict:
    """A real raster used as a fake probability: band 1 of RGB.byte.tif scaled to [0, 1]."""
    with rasterio.open(geotiffs / "rasterio" / "RGB.byte.tif") as src:
        band = src.read(1)
        transform = src.transform
    prob = (band / 255.0).astype(np.float32)
    mask = (band != 0) & (prob >= THRESHOLD)
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=CONNECTIVITY, ltype=cv2.CV_32S)
    return {"prob": prob, "mask": mask, "labels": labels, "n": n - 1, "transform": transform}


def run_bands(poly: StreamingPolygonizer, mask, prob, conf, heights):
    regions, row = [], 0
    for h in heights:
        regions += poly.add_band(row, mask[row : row + h], prob[row : row + h], conf[row : row + h])
        row += h
    assert row == mask.shape[0]
    return regions + poly.finish()


def band_heights(total: int, h: int) -> list[int]:
    return [min(h, total - r) for r in range(0, total, h)]


@pytest.mark.parametrize("heights", ["1", "7", "64", "irregular", "whole"])
def test_streamed_regions_equal_whole_mask_regions(landsat: dict, heights: str) -> None:
    mask, prob, labels = landsat["mask"], landsat["prob"], landsat["labels"]
    rows = mask.shape[0]
    plan = {
        "1": band_heights(rows, 1),
        "7": band_heights(rows, 7),
        "64": band_heights(rows, 64),
        "irregular": [3, 250, 1, 97, 200, 167],
        "whole": [rows],
    }[heights]
    regions = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, plan)

    # Reference: label and polygonize the whole mask in one go.
    counts = np.bincount(labels.ravel())
    reference = {}
    for geojson, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=CONNECTIVITY):
        reference.setdefault((shape(geojson).bounds, int(counts[int(value)])), []).append(shape(geojson))
    assert len(regions) == landsat["n"] == sum(len(v) for v in reference.values())
    assert Counter(r.pixel_count for r in regions) == Counter(counts[1:].tolist())
    for region in regions:
        assert region.geometry.geom_type == "Polygon" and region.geometry.is_valid
        assert region.geometry.area == pytest.approx(region.pixel_count)  # pixel space: 1 px = 1 unit^2
        candidates = reference[(region.geometry.bounds, region.pixel_count)]
        assert any(region.geometry.equals(c) for c in candidates)


def test_attributes_match_whole_mask_statistics(landsat: dict) -> None:
    mask, prob, labels = landsat["mask"], landsat["prob"], landsat["labels"]
    conf = np.sqrt(prob)  # any per-pixel layer: checks it is averaged per region, not mixed with prob
    heights = band_heights(mask.shape[0], 50)
    regions = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, conf, heights)
    flat = labels.ravel()
    counts = np.bincount(flat)
    mean_prob = np.bincount(flat, weights=prob.ravel()) / np.maximum(counts, 1)
    mean_conf = np.bincount(flat, weights=conf.ravel()) / np.maximum(counts, 1)
    max_prob = np.zeros(counts.size)
    np.maximum.at(max_prob, flat, prob.ravel())
    for region in regions:
        # the centre of a pixel of the region's top row identifies its label in the one-go labelling
        minx, miny, maxx, _ = region.geometry.bounds
        xs = np.arange(minx, maxx) + 0.5
        inside = shapely.contains_xy(region.geometry, xs, np.full_like(xs, miny + 0.5))
        label = labels[int(miny), int(xs[np.argmax(inside)])]
        assert inside.any() and label > 0
        assert region.pixel_count == counts[label]
        assert region.mean_prob == pytest.approx(mean_prob[label], abs=1e-6)
        assert region.max_prob == pytest.approx(max_prob[label], abs=1e-6)
        assert region.mean_confidence == pytest.approx(mean_conf[label], abs=1e-6)


def test_region_spanning_three_bands_is_one_region(landsat: dict) -> None:
    mask, prob, labels = landsat["mask"], landsat["prob"], landsat["labels"]
    counts = np.bincount(labels.ravel())
    biggest = int(np.argmax(counts[1:]) + 1)
    rows = np.nonzero((labels == biggest).any(axis=1))[0]
    band = max(1, (rows[-1] - rows[0] + 1) // 4)  # the region crosses at least 3 band borders
    assert (rows[-1] // band) - (rows[0] // band) >= 2
    heights = band_heights(mask.shape[0], band)
    regions = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    matching = [r for r in regions if r.pixel_count == counts[biggest]]
    assert len(matching) == 1
    geom = matching[0].geometry
    assert geom.geom_type == "Polygon"
    assert geom.bounds[1] == rows[0] and geom.bounds[3] == rows[-1] + 1


def synthetic(rows: list[str]) -> np.ndarray:
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)


@pytest.mark.parametrize(
    ("picture", "heights", "expected_counts"),
    [
        # U: two arms open in band 1 join in band 2 -> one region
        (["#..#", "#..#", "####"], [2, 1], [8]),
        # inverted U: one region splits into two arms below -> still one region
        (["####", "#..#", "#..#"], [1, 2], [8]),
        # W: three arms joined at the bottom, seen through 1-row bands
        (["#.#.#", "#.#.#", "#####"], [1, 1, 1], [11]),
        # diagonal neighbours are separate regions with 4-connectivity, across a band border too
        (["#...", ".#..", "..#."], [1, 1, 1], [1, 1, 1]),
        # a ring whose hole is cut by band borders keeps its hole
        (["#####", "#...#", "#...#", "#####"], [1, 2, 1], [14]),
        # nothing at all
        (["....", "...."], [1, 1], []),
    ],
)
def test_merging_across_band_borders(picture, heights, expected_counts) -> None:
    mask = synthetic(picture)
    prob = np.where(mask, 0.9, 0.1).astype(np.float32)
    regions = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    assert sorted(r.pixel_count for r in regions) == sorted(expected_counts)
    for region in regions:
        assert region.geometry.geom_type == "Polygon" and region.geometry.is_valid
        assert region.geometry.area == region.pixel_count
    if picture[1] == "#...#":
        assert len(regions[0].geometry.interiors) == 1


def test_open_regions_are_only_those_touching_the_last_row(landsat: dict) -> None:
    mask, prob = landsat["mask"], landsat["prob"]
    poly = StreamingPolygonizer(mask.shape[1])
    closed = poly.add_band(0, mask[:300], prob[:300], prob[:300])
    n, band_labels = cv2.connectedComponents(mask[:300].astype(np.uint8), connectivity=CONNECTIVITY)
    touching = np.unique(band_labels[-1][band_labels[-1] > 0]).size
    assert poly.open_regions == touching
    assert len(closed) == n - 1 - touching  # every other component of the band is already emitted


def test_transform_min_area_and_simplify(landsat: dict) -> None:
    mask, prob, labels, t = landsat["mask"], landsat["prob"], landsat["labels"], landsat["transform"]
    pixel_area = abs(t.a * t.e)
    counts = np.bincount(labels.ravel())[1:]
    min_pixels = 20
    poly = StreamingPolygonizer(
        mask.shape[1], transform=t, pixel_area=pixel_area, min_area=min_pixels * pixel_area
    )
    regions = run_bands(poly, mask, prob, prob, band_heights(mask.shape[0], 100))
    assert len(regions) == int((counts >= min_pixels).sum())
    left, top = t.c, t.f
    right, bottom = t.c + t.a * mask.shape[1], t.f + t.e * mask.shape[0]
    for region in regions:
        assert region.area == pytest.approx(region.pixel_count * pixel_area)
        assert region.geometry.area == pytest.approx(region.area, rel=1e-9)  # unsimplified, in CRS units
        minx, miny, maxx, maxy = region.geometry.bounds
        assert left - 1e-6 <= minx and maxx <= right + 1e-6 and bottom - 1e-6 <= miny and maxy <= top + 1e-6

    tolerance = 2 * t.a
    simple = run_bands(
        StreamingPolygonizer(mask.shape[1], transform=t, pixel_area=pixel_area,
                             min_area=min_pixels * pixel_area, simplify_tolerance=tolerance),
        mask, prob, prob, band_heights(mask.shape[0], 100),
    )  # fmt: skip
    vertices = sum(shapely.get_num_coordinates(r.geometry) for r in regions)
    simple_vertices = sum(shapely.get_num_coordinates(r.geometry) for r in simple)
    assert len(simple) == len(regions)
    assert simple_vertices < 0.8 * vertices
    assert all(r.geometry.is_valid for r in simple)


def test_rejects_bands_out_of_order(landsat: dict) -> None:
    mask, prob = landsat["mask"], landsat["prob"]
    poly = StreamingPolygonizer(mask.shape[1])
    poly.add_band(0, mask[:10], prob[:10], prob[:10])
    with pytest.raises(ValueError, match="contiguous"):
        poly.add_band(20, mask[20:30], prob[20:30], prob[20:30])
    with pytest.raises(ValueError, match=r"\[h>0"):
        poly.add_band(10, mask[10:20, :-1], prob[10:20, :-1], prob[10:20, :-1])


@pytest.mark.parametrize("height", [3, 7, 64, 718])
def test_min_area_prefilter_keeps_exactly_the_large_regions(landsat: dict, height: int) -> None:
    """Small components are dropped before polygonizing; regions reaching min_area across bands stay."""
    mask, prob, labels = landsat["mask"], landsat["prob"], landsat["labels"]
    counts = np.bincount(labels.ravel())[1:]
    min_pixels = 12
    poly = StreamingPolygonizer(mask.shape[1], min_area=min_pixels)
    regions = run_bands(poly, mask, prob, prob, band_heights(mask.shape[0], height))
    assert Counter(r.pixel_count for r in regions) == Counter(c for c in counts.tolist() if c >= min_pixels)
    assert all(r.geometry.area == pytest.approx(r.pixel_count) for r in regions)


# -- polygonized once per region: equal to the whole mask, band borders leave no trace ---------------


@pytest.fixture(scope="module")
def cas_mosaic(real_data: Path) -> dict:
    """Real landslide masks (CAS Hokkaido, 512² each) tiled 4x4: 2048², 320 real regions, 21 holes."""
    paths = sorted((real_data / "cas_hokkaido" / "masks").glob("*.png"))[:16]
    tiles = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) == 1 for p in paths]
    mask = np.block([tiles[0:4], tiles[4:8], tiles[8:12], tiles[12:16]])
    rng = np.random.default_rng(7)
    prob = np.where(mask, rng.uniform(0.5, 1.0, mask.shape), rng.uniform(0.0, 0.5, mask.shape))
    return {"mask": mask, "prob": prob.astype(np.float32)}


def whole_mask_reference(mask: np.ndarray, min_pixels: int, transform, tolerance: float) -> dict:
    """Label and polygonize the whole mask in one GDAL call: {(pixel_count, bounds): [(raw, simplified)]}."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=CONNECTIVITY)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False
    labels = np.where(keep[labels], labels, 0).astype(np.int32)
    reference: dict = {}
    for geojson, value in rasterio.features.shapes(labels, mask=labels > 0, connectivity=CONNECTIVITY):
        raw = shapely.affinity.affine_transform(shape(geojson), transform.to_shapely())
        simple = shapely.simplify(raw, tolerance, preserve_topology=True) if tolerance > 0 else raw
        count = int(stats[int(value), cv2.CC_STAT_AREA])
        reference.setdefault((count, raw.bounds), []).append((raw, simple))
    return reference


@pytest.mark.parametrize("heights", [64, 7, 1])
def test_real_mask_regions_equal_one_go_polygonizing(cas_mosaic: dict, heights: int) -> None:
    """Hundreds of real landslides, many crossing band borders: same regions, areas and geometries.

    Georeferenced and simplified as ``detect`` does it. Unsimplified, every region equals the one-go
    polygon exactly (symmetric difference 0, area = pixel count x pixel area); simplified, it is the
    one-go polygon simplified, vertex for vertex: where band borders fell leaves no trace.
    """
    mask, prob = cas_mosaic["mask"], cas_mosaic["prob"]
    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 3100000.0)
    min_pixels, pixel_area = 9, 0.25
    stats = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=CONNECTIVITY)[2]
    top, height = stats[1:, cv2.CC_STAT_TOP], stats[1:, cv2.CC_STAT_HEIGHT]
    crossing = (top // heights != (top + height - 1) // heights) & (stats[1:, cv2.CC_STAT_AREA] >= min_pixels)
    assert crossing.sum() >= 100  # the test is about regions cut by band borders

    for tolerance in (0.0, 0.25):
        reference = whole_mask_reference(mask, min_pixels, transform, tolerance)
        poly = StreamingPolygonizer(
            mask.shape[1],
            transform=transform,
            pixel_area=pixel_area,
            min_area=min_pixels * pixel_area,
            simplify_tolerance=tolerance,
        )
        regions = run_bands(poly, mask, prob, prob, band_heights(mask.shape[0], heights))
        assert len(regions) == sum(len(v) for v in reference.values())
        for region in regions:
            assert region.area == region.pixel_count * pixel_area
            assert region.geometry.geom_type == "Polygon" and region.geometry.is_valid
            if tolerance == 0:
                key = (region.pixel_count, region.geometry.bounds)
                assert region.geometry.area == pytest.approx(region.area, rel=1e-12)
                assert any(
                    shapely.symmetric_difference(region.geometry, raw).area == 0 for raw, _ in reference[key]
                )
            else:
                candidates = [
                    s for group in reference.values() for _, s in group if s.bounds == region.geometry.bounds
                ]
                assert any(shapely.equals_exact(region.geometry, s, 0) for s in candidates)


def test_regions_cut_into_slabs_are_still_exact(cas_mosaic: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regions whose bbox exceeds ``SLAB_PIXELS`` are polygonized in row slabs and unioned.

    With a tiny limit nearly every real region takes that path (and every canvas holds one slab): the
    polygons must be the same as in one piece, holes included.
    """
    mask, prob = cas_mosaic["mask"], cas_mosaic["prob"]
    heights = band_heights(mask.shape[0], 64)
    whole = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    monkeypatch.setattr(polygons_mod, "SLAB_PIXELS", 500)
    slabbed = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    assert [r.pixel_count for r in whole] == [r.pixel_count for r in slabbed]
    assert sum(len(r.geometry.interiors) for r in slabbed) == 21
    for a, b in zip(whole, slabbed, strict=True):
        assert b.geometry.geom_type == "Polygon" and b.geometry.is_valid
        assert a.geometry.area == b.geometry.area == a.pixel_count
        assert shapely.symmetric_difference(a.geometry, b.geometry).area == 0


def test_ring_batches_do_not_change_polygons(cas_mosaic: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """GDAL's rings packed into numpy a few vertices at a time give the same polygons as in one go."""
    mask, prob = cas_mosaic["mask"], cas_mosaic["prob"]
    heights = band_heights(mask.shape[0], 64)
    whole = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    monkeypatch.setattr(polygons_mod, "RING_BATCH_VERTICES", 7)
    batched = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, heights)
    assert len(whole) == len(batched) > 10
    assert sum(len(r.geometry.interiors) for r in batched) > 0
    for a, b in zip(whole, batched, strict=True):
        assert shapely.equals_exact(a.geometry, b.geometry, 0)


@pytest.mark.parametrize("density", [0.45, 0.55, 0.6])
def test_noisy_masks_give_valid_polygons_without_repair(density: float) -> None:
    """Speckle near the percolation threshold: pinch points everywhere, yet GDAL's rings are valid.

    The polygonizer no longer runs ``make_valid``; this is the check that it does not need to.
    """
    rng = np.random.default_rng(int(density * 100))
    mask = rng.random((300, 257)) < density
    prob = np.full(mask.shape, 0.9, dtype=np.float32)
    n, _ = cv2.connectedComponents(mask.astype(np.uint8), connectivity=CONNECTIVITY)
    regions = run_bands(StreamingPolygonizer(mask.shape[1]), mask, prob, prob, band_heights(300, 64))
    assert len(regions) == n - 1
    geoms = np.array([r.geometry for r in regions], dtype=object)
    assert shapely.is_valid(geoms).all()
    assert (shapely.get_type_id(geoms) == 3).all()  # Polygon
    assert (shapely.area(geoms) == [r.pixel_count for r in regions]).all()


def test_memory_is_bounded_by_open_regions_not_the_scene(real_data: Path) -> None:
    """A tall scene of 36 real masks stacked: what the polygonizer holds stays a band's worth."""
    paths = sorted((real_data / "cas_hokkaido" / "masks").glob("*.png"))
    mask = np.concatenate([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) == 1 for p in paths])
    prob = mask.astype(np.float32)
    poly = StreamingPolygonizer(mask.shape[1])
    held, total = [], 0
    for row in range(0, mask.shape[0], 64):
        total += len(poly.add_band(row, mask[row : row + 64], prob[row : row + 64], prob[row : row + 64]))
        held.append(poly.open_pixels)
    total += len(poly.finish())
    assert total > 500 and mask.size > 9_000_000
    assert max(held) < 64 * mask.shape[1] * 4  # a few bands' worth of crops ...
    assert max(held) < mask.size / 50  # ... never a noticeable part of the scene


def test_thin_diagonal_over_the_slab_limit_stays_exact_and_bounded() -> None:
    """A 2-px staircase across the scene: its bbox (17.6 Mpx) exceeds ``SLAB_PIXELS`` for 8,400 pixels.

    It is polygonized in slabs (no canvas of its bbox), its crops stay a band's height per band, and
    the union of the slabs is the one-go polygon.
    """
    n = 4200
    assert n * (n + 1) > polygons_mod.SLAB_PIXELS
    mask = np.zeros((n, n + 1), dtype=bool)
    mask[np.arange(n), np.arange(n)] = mask[np.arange(n), np.arange(n) + 1] = True
    prob = mask.astype(np.float32)
    poly = StreamingPolygonizer(mask.shape[1])
    regions, held = [], 0
    for row in range(0, n, 64):
        regions += poly.add_band(row, mask[row : row + 64], prob[row : row + 64], prob[row : row + 64])
        held = max(held, poly.open_pixels)
    regions += poly.finish()
    (region,) = regions
    assert region.pixel_count == 2 * n and region.geometry.area == 2 * n
    assert region.geometry.geom_type == "Polygon" and region.geometry.is_valid
    assert held <= 64 * 65 * (n // 64 + 1)  # one 64x65 crop per band so far, not the bbox
    (reference,) = [shape(g) for g, _ in rasterio.features.shapes(mask.astype(np.uint8), mask=mask)]
    assert shapely.symmetric_difference(region.geometry, reference).area == 0
