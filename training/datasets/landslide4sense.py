"""Landslide4Sense HDF5 patches (``img/image_N.h5`` + ``mask/mask_N.h5``).

Landslide4Sense HDF5 has no runtime reader; its values are the raw bands divided by the per-band
mean vector the dataset authors published (iarai/Landslide4Sense-2022 issues #2, #4), so they are
multiplied back into raw units (Sentinel-2 DN = reflectance x 10000, slope in degrees, DEM in metres)
and then scaled by the same ``reflectance`` rule the runtime applies to a GeoTIFF holding those raw
values (/ 10000, clipped to [0, 1]).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_ls.errors import ConfigError, InputError
from edge_ls.io.labelled import RGB, BadPair, PairRecord, mask_kind, pair_masks
from edge_ls.training.datasets.base import SENTINEL2_BANDS, Sample, SegmentationDataset

#: ``reflectance`` divisor of integer reflectance: the runtime's default (``ModelSpec.reflectance_scale``).
REFLECTANCE_SCALE = 10000.0

#: Landslide4Sense channels, in file order: Sentinel-2 B1..B12 (no B8A), slope, DEM.
#: B10 (cirrus) has no model band name in ``edge_ls.artifact.KNOWN_BANDS``.
L4S_BANDS: tuple[str, ...] = (*SENTINEL2_BANDS, "slope", "dem")
#: The per-band divisor the Landslide4Sense authors applied to the raw bands (issue #2/#4 of
#: iarai/Landslide4Sense-2022). Not the mean/std "normalization constants" of their baseline code.
L4S_DIVISOR: tuple[float, ...] = (
    1111.81236406,
    824.63171476,
    663.41636217,
    445.17289745,
    645.8582926,
    1547.73508126,
    1960.44401001,
    1941.32229668,
    674.07572865,
    9.04787384,
    1113.98338755,
    519.90397929,
    20.29228266,
    772.83144788,
)


class Landslide4Sense(SegmentationDataset):
    """Landslide4Sense: ``root/img/image_N.h5`` (``img`` 128x128x14) + ``root/mask/mask_N.h5``.

    ``root`` may also be the folder holding ``TrainData/``. Band names are :data:`L4S_BANDS` (``B1``..
    ``B12`` accepted); RGB is B4, B3, B2. Scaling: see the module docstring.
    """

    def __init__(
        self, root: str | Path, bands: Sequence[str] = RGB, input_range: str = "reflectance"
    ) -> None:
        root = Path(root)
        if not (root / "img").is_dir() and (root / "TrainData" / "img").is_dir():
            root = root / "TrainData"
        if not (root / "img").is_dir():
            raise InputError(f"{root} has no img/ folder of Landslide4Sense .h5 patches")
        super().__init__(root.name if root.name != "TrainData" else root.parent.name, bands, input_range)
        unknown = [b for b in self.bands if b not in L4S_BANDS]
        if unknown:
            raise ConfigError(f"Landslide4Sense has no band {unknown[0]} (bands: {', '.join(L4S_BANDS)})")
        self.root = root
        self.indexes = tuple(L4S_BANDS.index(b) for b in self.bands)
        images = sorted((root / "img").glob("*.h5"), key=lambda p: (len(p.stem), p.stem))
        masks = sorted((root / "mask").glob("*.h5")) if (root / "mask").is_dir() else []
        paired = pair_masks(images, masks)
        self.orphan_masks = sorted(set(masks) - set(paired))  # type: ignore[arg-type]
        self.records = [
            PairRecord(f"{self.name}/{img.stem}", img, m) for img, m in zip(images, paired, strict=True)
        ]

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def _load(self, i: int) -> Sample:
        rec = self.records[i]
        if rec.mask is None:
            raise BadPair("missing_mask", f"{rec.image.name} has no mask")
        raw = read_h5(rec.image, "img")
        if raw.ndim != 3 or raw.shape[-1] != len(L4S_BANDS):
            raise BadPair("unreadable", f"{rec.image.name}: 'img' has shape {raw.shape}, expected H x W x 14")
        values = read_h5(rec.mask, "mask")
        if values.shape != raw.shape[:2]:
            raise BadPair(
                "size_mismatch", f"{rec.image.name} is {raw.shape[:2]} but {rec.mask.name} is {values.shape}"
            )
        kind = mask_kind(values)
        if kind == "other":
            raise BadPair("mask_values", f"mask {rec.mask.name} has values other than 0/1 (or 0/255)")
        mask = (values == (255 if kind == "0_255" else 1)).astype(np.uint8)
        image, valid = l4s_unit(raw, self.indexes, self.input_range)
        if kind == "ignore_255":
            valid = (values != 255) if valid is None else valid & (values != 255)
        return Sample(image, mask, rec.id, "", valid)


def l4s_unit(
    raw: np.ndarray, indexes: Sequence[int], input_range: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landslide4Sense values -> [0, 1] for the chosen channels (H x W x C float32, validity or None).

    ``reflectance``: back to raw units (x the authors' divisor), then / 10000 as the runtime does for
    integer reflectance. ``8bit``: the runtime's rule for non-8-bit data, a 2-98 percentile stretch.
    """
    from edge_ls.io.scaling import STRETCH_PERCENTILES

    x = raw[..., list(indexes)].astype(np.float64)
    finite = np.isfinite(x).all(axis=-1)
    out = np.zeros(x.shape, np.float32)
    for c, band in enumerate(indexes):
        v = x[..., c]
        if input_range == "reflectance":
            u = v * L4S_DIVISOR[band] / REFLECTANCE_SCALE
        else:
            good = v[finite]
            lo, hi = np.percentile(good, STRETCH_PERCENTILES) if good.size else (0.0, 1.0)
            u = (v - lo) / (hi - lo) if hi > lo else v - lo
        out[..., c] = np.clip(np.nan_to_num(u, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)
    return out, (None if finite.all() else finite)


def read_h5(path: Path, key: str) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        from edge_ls.errors import MissingExtraError

        raise MissingExtraError("h5py", "train", "reading Landslide4Sense HDF5") from None
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise BadPair("unreadable", f"{path.name} has no '{key}' dataset (keys: {', '.join(f)})")
            return np.asarray(f[key][()])
    except BadPair:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise BadPair("unreadable", f"{path.name} cannot be read as HDF5 ({exc})") from None
