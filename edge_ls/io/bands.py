"""Which raster bands feed the model: names read from band descriptions and colour interpretation.

The rules (explicit ``--bands``, else a unique match by name, else bands in order only when the file
names nothing that contradicts them) are decided once per input by :class:`edge_ls.io.source.RasterSource`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import rasterio.io
from rasterio.enums import ColorInterp

from edge_ls.artifact import KNOWN_BANDS, ModelSpec
from edge_ls.errors import InputError

#: Band descriptions understood as model band names (compared lower-case, without separators).
#: Sentinel-2 names are accepted in their two-digit form only (B04, B8A): "B4"/"B5" mean different
#: bands on Landsat, so guessing there would silently swap bands.
_DESCRIPTION_NAMES = {
    **{name: name for name in KNOWN_BANDS},
    "grey": "gray",
    "nearinfrared": "nir",
    "nearir": "nir",
    "coastalaerosol": "coastal",
    "watervapor": "watervapour",
    "elevation": "dem",
    "b01": "coastal",
    "b02": "blue",
    "b03": "green",
    "b04": "red",
    "b05": "rededge1",
    "b06": "rededge2",
    "b07": "rededge3",
    "b08": "nir",
    "b8a": "nir08",
    "b09": "watervapour",
    "b11": "swir1",
    "b12": "swir2",
}
_COLORINTERP_NAMES = {
    ColorInterp.red: "red",
    ColorInterp.green: "green",
    ColorInterp.blue: "blue",
    ColorInterp.gray: "gray",
    ColorInterp.alpha: "alpha",
}


def _band_names(ds: rasterio.io.DatasetReader) -> list[str | None]:
    """Model band name of each raster band, from its description, else its colour interpretation."""
    names: list[str | None] = []
    for desc, interp in zip(ds.descriptions, ds.colorinterp, strict=True):
        name = _name_from_description(desc) if desc else None
        names.append(name or _COLORINTERP_NAMES.get(interp))
    return names


def _name_from_description(desc: str) -> str | None:
    """Map a band description ("NIR", "B08", "Red band", "Near Infrared") to a model band name."""
    text = desc.lower()
    key = re.sub(r"[^a-z0-9]", "", text)
    if key in _DESCRIPTION_NAMES:
        return _DESCRIPTION_NAMES[key]
    tokens = re.findall(r"[a-z0-9]+", text)
    if "edge" in tokens or "infrared" in tokens:
        return "nir" if {"near", "infrared"} <= set(tokens) else None
    hits = {_DESCRIPTION_NAMES[t] for t in tokens if t in _DESCRIPTION_NAMES}
    return hits.pop() if len(hits) == 1 else None


def _band_summary(ds: rasterio.io.DatasetReader) -> str:
    """ "1: red, 2: green, 3: blue, 4: alpha" - what the raster offers, for error messages."""
    parts = []
    for i, (desc, interp) in enumerate(zip(ds.descriptions, ds.colorinterp, strict=True), start=1):
        label = interp.name + (f" '{desc}'" if desc else "")
        parts.append(f"{i}: {label}")
    return ", ".join(parts)


def _select_bands(
    ds: rasterio.io.DatasetReader, spec: ModelSpec, bands: Sequence[int] | None, name: str
) -> tuple[int, ...]:
    """Pick the raster bands feeding the model, in the model's order (see the module rules)."""
    need = len(spec.bands)
    wanted = ", ".join(spec.bands)
    if bands is not None:
        chosen = tuple(int(b) for b in bands)
        if len(chosen) != need:
            raise InputError(
                f"--bands gives {len(chosen)} band(s) but model '{spec.name}' needs {need} ({wanted})"
            )
        bad = [b for b in chosen if not 1 <= b <= ds.count]
        if bad:
            raise InputError(
                f"--bands {','.join(map(str, chosen))}: {name} has bands 1..{ds.count}, not {bad[0]}"
            )
        return chosen
    names = _band_names(ds)
    matched = [[i for i, n in enumerate(names, start=1) if n == b] for b in spec.bands]
    if all(len(m) == 1 for m in matched) and len({m[0] for m in matched}) == need:
        return tuple(m[0] for m in matched)
    usable = [i for i, n in enumerate(names, start=1) if n != "alpha"]
    offered = f"{name} has {ds.count} band(s) ({_band_summary(ds)})"
    if ColorInterp.palette in ds.colorinterp:
        raise InputError(
            f"{offered}: palette colours must be expanded first, e.g. gdal_translate -expand rgb in out.tif"
        )
    if len(usable) < need:
        raise InputError(f"model '{spec.name}' needs {need} band(s) ({wanted}) but {offered}")
    if len(usable) == need:
        # Taking bands in order is a guess: refuse it when the file names them otherwise (e.g. BGR).
        conflicts = [
            f"band {i} is {n}, not {b}"
            for i, b in zip(usable, spec.bands, strict=True)
            if (n := names[i - 1]) is not None and n != "gray" and n != b
        ]
        if not conflicts:
            return tuple(usable)
        raise InputError(
            f"model '{spec.name}' needs {wanted} but {offered} ({'; '.join(conflicts)}): "
            "choose them with --bands"
        )
    example = ",".join(str(i) for i in usable[:need])
    raise InputError(
        f"model '{spec.name}' needs {need} band(s) ({wanted}) and {offered}, which cannot be matched by "
        f"name: choose them with --bands, e.g. --bands {example}"
    )
