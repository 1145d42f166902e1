"""The dataset interface: indexed labelled pairs read as :class:`Sample`, one loader per layout.

Every loader yields :class:`Sample`: the image H x W x C float32 in [0, 1] (bands already selected,
in the model's order), the mask H x W uint8 0/1, an id unique across datasets (``<dataset>/<stem>``)
and a group (tiles of one group must land in the same split, see :mod:`edge_ls.training.splits`).
Bad pairs raise :class:`~edge_ls.io.labelled.BadPair` from ``dataset[i]``; iterating a dataset skips
them, logs one line each and counts them in ``dataset.skipped``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_ls.artifact import INPUT_RANGES
from edge_ls.errors import ConfigError
from edge_ls.io.labelled import BadPair
from edge_ls.training.datasets.grouping import derive_groups

log = logging.getLogger(__name__)

#: Ground sampling distance (m) of the datasets edge-ls trains on, by folder name (see
#: ``shared/data/real/README.md``); a dataset not listed here needs ``data.gsd_m`` in the config
#: when scale augmentation is on.
KNOWN_GSD_M: dict[str, float] = {"cas_hokkaido": 3.0, "bijie": 0.8, "l4s_rgb": 10.0}

#: Sentinel-2 bands B1..B12 (no B8A), in band-number order.
SENTINEL2_BANDS: tuple[str, ...] = (
    "coastal",
    "blue",
    "green",
    "red",
    "rededge1",
    "rededge2",
    "rededge3",
    "nir",
    "watervapour",
    "cirrus",
    "swir1",
    "swir2",
)
#: Sentinel-2 band codes accepted as band names (B8 is NIR; Landslide4Sense RGB = B4, B3, B2).
BAND_ALIASES = {
    **{f"b{i}": name for i, name in enumerate(SENTINEL2_BANDS, start=1)},
    **{f"b{i:02d}": name for i, name in enumerate(SENTINEL2_BANDS, start=1)},
    "elevation": "dem",
}


@dataclass
class Sample:
    """One labelled tile, ready for augmentation."""

    image: np.ndarray  # H x W x C float32 in [0, 1], channels in ``dataset.bands`` order
    mask: np.ndarray  # H x W uint8, 1 = landslide
    id: str
    group: str
    #: H x W bool, False on image nodata or ignored label pixels; None when every pixel counts.
    valid: np.ndarray | None = None


def canonical_band(name: str) -> str:
    """Band name as the artifact spells it (``B8`` -> ``nir``), lower-case."""
    key = name.strip().lower()
    return BAND_ALIASES.get(key, key)


class SegmentationDataset:
    """Indexed labelled pairs; subclasses say how one pair is read (:meth:`_load`)."""

    name: str
    bands: tuple[str, ...]
    input_range: str

    def __init__(self, name: str, bands: Sequence[str], input_range: str) -> None:
        if input_range not in INPUT_RANGES:
            raise ConfigError(f"input_range '{input_range}' must be one of {', '.join(INPUT_RANGES)}")
        self.name = name
        self.bands = tuple(canonical_band(b) for b in bands)
        if not self.bands or len(set(self.bands)) != len(self.bands):
            raise ConfigError(f"bands {list(bands)}: give each band once")
        self.input_range = input_range
        self.skipped: Counter[str] = Counter()
        self._skipped_ids: set[str] = set()
        self._groups: list[str] | None = None
        #: Mask files no image claims (reported by QA; they cannot be used).
        self.orphan_masks: list[Path] = []

    # -- to implement -------------------------------------------------------------------------------
    @property
    def ids(self) -> list[str]:
        raise NotImplementedError

    def _load(self, i: int) -> Sample:
        """Read pair ``i`` (group left empty); raise :class:`BadPair` when it cannot be used."""
        raise NotImplementedError

    def _region(self, i: int) -> str:
        return ""

    # -- shared ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        sample = self._load(i % len(self))
        sample.group = self.groups[i]
        return sample

    def __iter__(self) -> Iterator[Sample]:
        """Every usable sample; bad pairs are skipped, logged and counted in ``self.skipped``."""
        for i in range(len(self)):
            sample = self.try_get(i)
            if sample is not None:
                yield sample

    def try_get(self, i: int) -> Sample | None:
        """``self[i]``, or None (logged, counted in ``self.skipped``) when the pair is bad."""
        try:
            return self[i]
        except BadPair as exc:
            sid = self.ids[i]
            if sid not in self._skipped_ids:  # counted once, however often the pair is visited
                self._skipped_ids.add(sid)
                self.skipped[exc.reason] += 1
                log.warning("skipping %s: %s", sid, exc)
            return None

    @property
    def groups(self) -> list[str]:
        """Split groups, one per id: see :func:`.grouping.derive_groups` (computed once, on first use)."""
        if self._groups is None:
            self._groups = derive_groups(self)
        return self._groups

    def set_groups(self, groups: Sequence[str]) -> None:
        if len(groups) != len(self):
            raise ValueError(f"{len(groups)} groups for {len(self)} samples")
        self._groups = list(groups)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} pairs, bands={self.bands})"


def indices_of(dataset: SegmentationDataset, ids: Sequence[str]) -> list[int]:
    """Positions of ``ids`` in ``dataset``; unknown ids fail naming the first one."""
    where = {sid: i for i, sid in enumerate(dataset.ids)}
    missing = [s for s in ids if s not in where]
    if missing:
        raise ConfigError(f"{len(missing)} id(s) not in dataset {dataset.name}, e.g. '{missing[0]}'")
    return [where[s] for s in ids]


def dataset_gsd(name: str, given: float = 0.0) -> float:
    """Ground sampling distance of dataset ``name`` in metres: ``given`` when set, else the known one."""
    if given > 0:
        return float(given)
    if name in KNOWN_GSD_M:
        return KNOWN_GSD_M[name]
    known = ", ".join(f"{k} {v:g}" for k, v in KNOWN_GSD_M.items())
    raise ConfigError(
        f"the ground sampling distance of dataset '{name}' is unknown: give it in data.gsd_m "
        f"(one value per data.roots entry, in metres; known: {known})"
    )
