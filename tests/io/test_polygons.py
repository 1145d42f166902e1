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
from shapely.geometry import shape

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
