"""Where a raster's pixels are on the ground: the ground sampling distance and pixel area in metres.

Projected CRSs give the pixel size in their linear unit; geographic ones (and projections that distort
distance, such as Web Mercator away from the equator) are measured on the WGS84 ellipsoid at the scene
centre, so km² and GSD in the report are honest. Split from :mod:`edge_ls.io.source`, which decides
everything else about the input once.
"""

from __future__ import annotations

import logging
import math

import rasterio
import rasterio.crs
import rasterio.io
import rasterio.warp
from rasterio import Affine
from rasterio.errors import RasterioError

log = logging.getLogger(__name__)

#: A projection whose true ground pixel size at the scene centre differs from the nominal one by more
#: than this (Web Mercator away from the equator) reports the true size, so km² and GSD are honest.
SCALE_DISTORTION_TOLERANCE = 0.02
_WGS84_A = 6378137.0
_WGS84_E2 = 6.69437999014e-3


def ground_pixel_size(
    crs: rasterio.crs.CRS | None, transform: Affine, width: int, height: int
) -> tuple[float, float, str] | None:
    """Return ``(gsd_m, pixel_area_m2, how)`` at the scene centre, or None when it cannot be known.

    Projected CRSs use the nominal pixel size in their linear unit converted to metres, unless the
    projection distorts distance at the scene centre by more than ``SCALE_DISTORTION_TOLERANCE`` (Web
    Mercator); then, as for geographic CRSs, the pixel's sides are measured on the WGS84 ellipsoid
    (an approximation for other datums, good to well under 1% for a pixel size).
    """
    if crs is None:
        return None
    col = (transform.a, transform.d)  # CRS units per pixel step along a row (x)
    row = (transform.b, transform.e)  # CRS units per pixel step down a column (y)
    cx, cy = transform @ (width / 2.0, height / 2.0)
    if crs.is_geographic:
        deg = _degrees_per_unit(crs)
        lon_lat = (cx * deg, cy * deg)
        sizes = _ellipsoid_pixel(lon_lat, (col[0] * deg, col[1] * deg), (row[0] * deg, row[1] * deg))
        if sizes is None:
            return None
        return (*sizes, f"degrees to metres at latitude {lon_lat[1]:.2f} (WGS84 ellipsoid)")
    if not crs.is_projected:
        return None
    try:
        unit, factor = crs.linear_units_factor
    except RasterioError:
        return None
    gx, gy = math.hypot(*col) * factor, math.hypot(*row) * factor
    nominal = ((gx + gy) / 2.0, abs(col[0] * row[1] - col[1] * row[0]) * factor * factor)
    how = f"pixel size in {unit}" if factor == 1.0 else f"pixel size in {unit} (x {factor:g} m)"
    true = _true_pixel_size(crs, (cx, cy), col, row)
    if true is not None and abs(true[0] / nominal[0] - 1.0) > SCALE_DISTORTION_TOLERANCE:
        lat = true[2]
        return (
            true[0],
            true[1],
            f"measured on the WGS84 ellipsoid at latitude {lat:.2f}, where one {unit} of this "
            f"projection is {true[0] / nominal[0]:.3f} m on the ground",
        )
    return (*nominal, how)


def _true_pixel_size(
    crs: rasterio.crs.CRS, centre: tuple[float, float], col: tuple[float, float], row: tuple[float, float]
) -> tuple[float, float, float] | None:
    """Measure one pixel at ``centre`` on the ground: project its corners to lon/lat, then to metres."""
    xs = [centre[0], centre[0] + col[0], centre[0] + row[0]]
    ys = [centre[1], centre[1] + col[1], centre[1] + row[1]]
    try:
        lons, lats = rasterio.warp.transform(crs, "EPSG:4326", xs, ys)
    except Exception:  # PROJ cannot relate every CRS (engineering, broken WKT): keep the nominal size
        return None
    steps = [(lons[i] - lons[0], lats[i] - lats[0]) for i in (1, 2)]
    sizes = _ellipsoid_pixel((lons[0], lats[0]), steps[0], steps[1])
    return None if sizes is None else (*sizes, lats[0])


def _ellipsoid_pixel(
    lon_lat: tuple[float, float], col_deg: tuple[float, float], row_deg: tuple[float, float]
) -> tuple[float, float] | None:
    """Side length mean and area in metres of a pixel given its sides in degrees (lon, lat)."""
    lat = lon_lat[1]
    if not (math.isfinite(lat) and -90.0 < lat < 90.0):
        return None
    phi = math.radians(lat)
    w = math.sqrt(1.0 - _WGS84_E2 * math.sin(phi) ** 2)
    per_deg_lon = math.radians(1.0) * _WGS84_A / w * math.cos(phi)
    per_deg_lat = math.radians(1.0) * _WGS84_A * (1.0 - _WGS84_E2) / w**3
    cx, cy = col_deg[0] * per_deg_lon, col_deg[1] * per_deg_lat
    rx, ry = row_deg[0] * per_deg_lon, row_deg[1] * per_deg_lat
    gsd = (math.hypot(cx, cy) + math.hypot(rx, ry)) / 2.0
    area = abs(cx * ry - cy * rx)
    return (gsd, area) if gsd > 0 and math.isfinite(gsd) else None


#: Slack, in degrees, on the [-180, 180] x [-90, 90] box: rounding of a global raster's corners.
_BOUNDS_SLACK_DEG = 1e-6


def impossible_georeference(
    crs: rasterio.crs.CRS | None, transform: Affine, width: int, height: int
) -> str | None:
    """Why a geographic raster's corners cannot be on the Earth (latitude 120), or None.

    Such a raster taken as georeferenced writes invalid GeoJSON and areas computed from nonsense; it
    runs in pixel space instead. Projected CRSs are not judged here (their valid area varies).
    """
    if crs is None or not crs.is_geographic:
        return None
    deg = _degrees_per_unit(crs)
    corners = [transform * (c, r) for c in (0, width) for r in (0, height)]
    lons = [x * deg for x, _ in corners]
    lats = [y * deg for _, y in corners]
    if not all(math.isfinite(v) for v in lons + lats):
        return "corner coordinates are not finite"
    s = _BOUNDS_SLACK_DEG
    if min(lats) < -90.0 - s or max(lats) > 90.0 + s:
        return f"latitude {min(lats):.6g}..{max(lats):.6g} degrees is outside [-90, 90]"
    if min(lons) < -180.0 - s or max(lons) > 180.0 + s:
        return f"longitude {min(lons):.6g}..{max(lons):.6g} degrees is outside [-180, 180]"
    return None


def _degrees_per_unit(crs: rasterio.crs.CRS) -> float:
    """Degrees per angular unit of a geographic CRS (1 for degrees; grads exist)."""
    try:
        _, radians_per_unit = crs.units_factor
    except RasterioError:
        return 1.0
    return math.degrees(radians_per_unit) if radians_per_unit else 1.0


def _warn_about_georeference(ds: rasterio.io.DatasetReader, name: str, georeferenced: bool) -> None:
    """Say why a raster that looks geographic will still run in pixel space."""
    if georeferenced:
        return
    if ds.gcps[0] or ds.rpcs:
        log.warning("%s has GCPs/RPCs but no geotransform: warp it (gdalwarp) to georeference outputs", name)
    elif ds.crs is None and not ds.transform.is_identity:
        log.warning("%s has a geotransform but no CRS: outputs will be in pixel space", name)
