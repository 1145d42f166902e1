"""A minimal OGC GeoPackage (1.3) writer for the detection polygons, on the standard library's sqlite3.

Why GeoPackage (and not FlatGeobuf): it is one SQLite file that QGIS, ArcGIS, GDAL/OGR, fiona,
pyogrio and geopandas open natively, it carries a full CRS definition (not just a code), and Python
can write it without a new dependency: rasterio bundles GDAL but exposes no OGR writer, and
FlatGeobuf would need a FlatBuffers encoder of our own. Features are inserted as the vectorizer emits
them (one transaction, committed at :meth:`GeoPackageStream.close`), so no region list is held.

What is written: the required ``gpkg_spatial_ref_sys`` (with the input's CRS as WKT), ``gpkg_contents``
(with the layer's extent) and ``gpkg_geometry_columns`` tables, and one feature table whose geometry
column holds GeoPackage binary geometries (``GP`` header with the envelope, then ISO WKB) as
``MULTIPOLYGON``. No spatial index (R-tree): GDAL and QGIS read the layer without one; ``ogr2ogr``
or QGIS add it when the layer is large enough to need it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from rasterio.crs import CRS

#: ``PRAGMA application_id`` of a GeoPackage ("GPKG") and ``user_version`` of version 1.3.0.
_APPLICATION_ID = 0x47504B47
_USER_VERSION = 10300
#: srs_id of the "undefined cartesian SRS" every GeoPackage carries: pixel space, no CRS.
UNDEFINED_CARTESIAN = -1
#: srs_id given to a CRS that has no EPSG code (GDAL's convention: user ids from 100000).
_CUSTOM_SRS_ID = 100000
#: Flags byte of the geometry header: little endian (bit 0) with an [minx, maxx, miny, maxy] envelope.
_HEADER_FLAGS = 0b0000_0011

_SCHEMA = """
CREATE TABLE gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER NOT NULL PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
CREATE TABLE gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE,
  description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL,
  srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT uk_gc_table_name UNIQUE (table_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""
#: The two SRS rows the standard requires in every GeoPackage, besides WGS 84.
_REQUIRED_SRS = (
    (
        "Undefined cartesian SRS",
        -1,
        "NONE",
        -1,
        "undefined",
        "undefined cartesian coordinate reference system",
    ),
    (
        "Undefined geographic SRS",
        0,
        "NONE",
        0,
        "undefined",
        "undefined geographic coordinate reference system",
    ),
)


def srs_row(crs: CRS | None) -> tuple[str, int, str, int, str, str]:
    """The ``gpkg_spatial_ref_sys`` row of ``crs`` (None: the undefined cartesian SRS of pixel space)."""
    if crs is None:
        return _REQUIRED_SRS[0]
    wkt = crs.to_wkt()  # WKT 1, what the GeoPackage standard asks for in ``definition``
    name = wkt.split('"')[1] if '"' in wkt else "custom"  # the CRS's own name, e.g. WGS 84 / UTM zone 46N
    epsg = crs.to_epsg()
    if epsg is not None:
        return (name, epsg, "EPSG", epsg, wkt, "")
    return (name, _CUSTOM_SRS_ID, "NONE", _CUSTOM_SRS_ID, wkt, "")


def geometry_blob(geometry: shapely.Geometry, srs_id: int) -> bytes:
    """GeoPackage binary geometry: ``GP`` header (version 0, flags, srs_id, xy envelope) + ISO WKB."""
    minx, miny, maxx, maxy = shapely.bounds(geometry)
    header = struct.pack("<2sBBi4d", b"GP", 0, _HEADER_FLAGS, srs_id, minx, maxx, miny, maxy)
    return header + shapely.to_wkb(geometry, byte_order=1, flavor="iso")


class GeoPackageStream:
    """One polygon layer, written feature by feature; ``fields`` are REAL columns, in order."""

    def __init__(
        self, path: Path, layer: str, crs: CRS | None, fields: Sequence[str], description: str
    ) -> None:
        self.path = path
        self.layer = layer
        self.fields = tuple(fields)
        row = srs_row(crs)
        self.srs_id = row[1]
        self._bounds = np.array([np.inf, np.inf, -np.inf, -np.inf])
        self._count = 0
        self._db = sqlite3.connect(path, check_same_thread=False)  # created here, written by the vectorizer
        try:
            self._db.execute("PRAGMA journal_mode = OFF")  # the file is discarded on failure anyway
            self._db.execute("PRAGMA synchronous = FULL")  # the final commit syncs the file
            self._db.execute(f"PRAGMA application_id = {_APPLICATION_ID}")
            self._db.execute(f"PRAGMA user_version = {_USER_VERSION}")
            self._db.executescript(_SCHEMA)
            wgs84 = srs_row(CRS.from_epsg(4326))
            rows = {r[1]: r for r in (*_REQUIRED_SRS, wgs84, row)}
            self._db.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?, ?, ?, ?, ?, ?)", rows.values())
            columns = "".join(f', "{f}" REAL' for f in self.fields)
            self._db.execute(
                f'CREATE TABLE "{layer}" (fid INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, '
                f"geom MULTIPOLYGON{columns})"
            )
            # last_change at day precision (the COGs' EDGE_LS_DATE): a rerun of the same scene the same
            # day writes a byte-identical file, which is what a resumed run is checked against.
            self._db.execute(
                "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change, "
                "srs_id) VALUES (?, 'features', ?, ?, strftime('%Y-%m-%dT00:00:00.000Z', 'now'), ?)",
                (layer, layer, description, self.srs_id),
            )
            self._db.execute(
                "INSERT INTO gpkg_geometry_columns VALUES (?, 'geom', 'MULTIPOLYGON', ?, 0, 0)",
                (layer, self.srs_id),
            )
        except BaseException:
            self._db.close()
            raise
        names = ", ".join(f'"{f}"' for f in ("geom", *self.fields))
        marks = ", ".join("?" * (len(self.fields) + 1))
        self._insert = f'INSERT INTO "{layer}" ({names}) VALUES ({marks})'

    @property
    def count(self) -> int:
        return self._count

    def write(self, geometries: Sequence[shapely.Geometry], values: Sequence[Sequence[float]]) -> None:
        """Append features: one geometry (Polygon or MultiPolygon) and one value per field each."""
        if not len(geometries):
            return
        multi = [g if g.geom_type == "MultiPolygon" else shapely.MultiPolygon([g]) for g in geometries]
        rows = [(geometry_blob(g, self.srs_id), *map(float, v)) for g, v in zip(multi, values, strict=True)]
        self._db.executemany(self._insert, rows)
        b = shapely.total_bounds(np.asarray(multi, dtype=object))
        self._bounds = np.r_[np.minimum(self._bounds[:2], b[:2]), np.maximum(self._bounds[2:], b[2:])]
        self._count += len(rows)

    def close(self) -> None:
        """Record the layer's extent and commit (durably: ``synchronous = FULL`` syncs the file)."""
        if self._count:
            self._db.execute(
                "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ? WHERE table_name = ?",
                (*map(float, self._bounds), self.layer),
            )
        self._db.commit()
        self._db.close()

    def discard(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
