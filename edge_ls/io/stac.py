"""A STAC Item per scene (``item.json``) and the run's ItemCollection (``summary.json``).

Written as plain STAC 1.0.0 JSON, so the runtime needs no new package on a ground station; the
``stac`` extra (pystac) reads and validates them (:func:`validate`, the tests). Assets: probability,
mask, confidence, uncertainty when written, polygons (GeoJSON and GeoPackage, or the pixel-space
GeoPackage), quicklook and the report, with hrefs relative to the item. Properties: the model (name,
tier, sha256), profile, threshold and the report's figures (tiles/s, peak memory, min/km²,
detections). Geometry: the scene's footprint in WGS 84 (edges densified, so a projected scene's
outline stays true); a scene without georeference has ``null`` geometry and no bbox, as STAC allows.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_ls.errors import MissingExtraError

if TYPE_CHECKING:
    from edge_ls.io.outputs import OutputSet

STAC_VERSION = "1.0.0"
#: Points per footprint edge when reprojecting it to WGS 84.
_EDGE_POINTS = 16

_COG = "image/tiff; application=geotiff; profile=cloud-optimized"
#: Logical output name -> (media type, roles, title).
_ASSETS: dict[str, tuple[str, list[str], str]] = {
    "probability": (_COG, ["data"], "Landslide probability"),
    "mask": (_COG, ["data"], "Landslide mask (1 = landslide)"),
    "confidence": (_COG, ["data"], "Confidence"),
    "uncertainty": (_COG, ["data"], "Uncertainty (std over D4 test-time augmentations)"),
    "detections": ("application/geo+json", ["data"], "Landslide polygons (WGS 84)"),
    "detections_gpkg": ("application/geopackage+sqlite3", ["data"], "Landslide polygons (scene CRS)"),
    "detections_pixel": ("application/geopackage+sqlite3", ["data"], "Landslide polygons (pixel space)"),
    "quicklook": ("image/png", ["overview", "visual"], "Quicklook"),
    "probability_style": ("text/xml", ["metadata"], "QGIS style of the probability"),
    "report": ("application/json", ["metadata"], "edge-ls run report"),
}
#: Report keys copied into the item's properties (as ``edge_ls:<key>``).
_FIGURES = (
    "tiles",
    "tiles_per_s",
    "peak_rss_mb",
    "latency_min_per_km2",
    "area_km2",
    "gsd_m",
    "backend",
    "device",
    "precision",
)


def item_builder(model_path: Path | None, scene_id: str):
    """The ``item`` callback of :class:`edge_ls.io.outputs.OutputSet` for one scene."""

    def build(outputs: OutputSet, report: dict[str, Any]) -> dict[str, Any]:
        return scene_item(outputs, report, scene_id=scene_id, model_sha256=_sha256(model_path))

    return build


def scene_item(
    outputs: OutputSet, report: dict[str, Any], *, scene_id: str, model_sha256: str | None
) -> dict[str, Any]:
    """The STAC Item of a committed set (see the module docstring)."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    geometry, bbox = footprint(outputs)
    stats = report.get("output_stats") or {}
    props: dict[str, Any] = {
        "datetime": now,
        "created": now,
        "edge_ls:input": report.get("input"),
        "edge_ls:model": report.get("model"),
        "edge_ls:model_sha256": model_sha256,
        "edge_ls:tier": report.get("tier"),
        "edge_ls:profile": report.get("profile"),
        "edge_ls:threshold": report.get("threshold"),
        "edge_ls:detections": stats.get("detections"),
        "edge_ls:detected_area_m2": stats.get("detected_area_m2") if stats.get("area_unit") == "m2" else None,
        **{f"edge_ls:{k}": report.get(k) for k in _FIGURES},
    }
    if outputs.crs is not None and outputs.crs.to_epsg():
        props["proj:epsg"] = outputs.crs.to_epsg()
    assets = {}
    for name, file in outputs.files.items():
        if name in _ASSETS:
            media, roles, title = _ASSETS[name]
            assets[name] = {"href": f"./{file}", "type": media, "roles": roles, "title": title}
    item: dict[str, Any] = {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [],
        "id": scene_id,
        "geometry": geometry,
        "properties": props,
        "links": [],
        "assets": assets,
    }
    if bbox is not None:
        item["bbox"] = bbox
    return item


def footprint(outputs: OutputSet) -> tuple[dict[str, Any] | None, list[float] | None]:
    """The set's outline as a GeoJSON Polygon in WGS 84 and its bbox; (None, None) without georeference."""
    if not outputs.georeferenced or outputs.crs is None or outputs.transform is None:
        return None, None
    from rasterio.warp import transform as warp

    w, h, n = outputs.width, outputs.height, _EDGE_POINTS
    edge = [i / n for i in range(n)]
    ring_px = (
        [(f * w, 0.0) for f in edge]
        + [(w, f * h) for f in edge]
        + [(w - f * w, h) for f in edge]
        + [(0.0, h - f * h) for f in edge]
    )
    xs, ys = zip(*(outputs.transform * p for p in ring_px), strict=True)
    lon, lat = warp(outputs.crs, "EPSG:4326", list(xs), list(ys))
    ring = [[round(x, 7), round(y, 7)] for x, y in zip(lon, lat, strict=True)]
    if _signed_area(ring) < 0:  # RFC 7946: exterior rings counter-clockwise
        ring.reverse()
    ring.append(ring[0])
    bbox = [min(lon), min(lat), max(lon), max(lat)]
    return {"type": "Polygon", "coordinates": [ring]}, [round(v, 7) for v in bbox]


def item_collection(items: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The run's ItemCollection: (folder name, item) pairs, asset hrefs made relative to ``--out``."""
    features = []
    for folder, item in items:
        item = {**item, "assets": {k: dict(a) for k, a in item["assets"].items()}}
        for asset in item["assets"].values():
            href = asset["href"].removeprefix("./")
            asset["href"] = f"./{folder}/{href}" if folder else f"./{href}"
        features.append(item)
    return {"type": "FeatureCollection", "features": features}


def validate(doc: dict[str, Any]) -> None:
    """Parse ``doc`` (an Item or ItemCollection) with pystac's object model; raises what pystac raises.

    Offline on purpose: ``pystac``'s JSON-schema validation downloads the schemas, which a ground
    station cannot; the object model checks the structure (types, required fields, datetimes, assets).
    """
    try:
        import pystac
    except ImportError:
        raise MissingExtraError("pystac", "stac", "validating STAC items") from None
    if doc.get("type") == "FeatureCollection":
        collection = pystac.ItemCollection.from_dict(doc)
        for item in collection.items:
            item.to_dict()
    else:
        pystac.Item.from_dict(doc).to_dict()


def _signed_area(ring: list[list[float]]) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True))


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from edge_ls.manifest import sha256_file

    return sha256_file(path)


def _sha256(path: Path | None) -> str | None:
    """sha256 of the model file, hashed once per run (a model can be hundreds of MB)."""
    if path is None:
        return None
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def model_sha256(path: Path | None) -> str | None:
    """Public face of the cached model hash (the scene key uses it too)."""
    return _sha256(path)
