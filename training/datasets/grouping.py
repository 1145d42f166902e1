"""Split groups: tiles that overlap (or repeat) must land in the same split."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from edge_ls.errors import ConfigError
from edge_ls.io.labelled import BadPair

if TYPE_CHECKING:
    from edge_ls.training.datasets.base import SegmentationDataset


@dataclass
class TileFingerprint:
    """Hashes to find duplicates (whole image) and stride-half overlaps (aligned half-tile blocks)."""

    whole: str
    blocks: tuple[str, ...] = field(default_factory=tuple)


def fingerprint(image: np.ndarray) -> TileFingerprint:
    """Whole-image hash plus hashes of the 2 x 2 grid of half-size blocks (non-constant ones only).

    CAS tiles are 512-px windows at stride 256: horizontal/vertical neighbours share two blocks,
    diagonal ones one. Constant blocks (nodata collars, black borders) are left out so they do not
    link unrelated tiles.
    """
    h, w = image.shape[:2]
    whole = _digest(image)
    bh, bw = h // 2, w // 2
    blocks = []
    if bh >= 8 and bw >= 8:
        for y in (0, h - bh) if h == 2 * bh else (0, bh):
            for x in (0, w - bw) if w == 2 * bw else (0, bw):
                block = image[y : y + bh, x : x + bw]
                if float(block.max()) > float(block.min()):
                    blocks.append(_digest(block))
    return TileFingerprint(whole, tuple(blocks))


def _digest(a: np.ndarray) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(a.shape).encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def overlap_clusters(prints: Sequence[TileFingerprint | None]) -> list[int]:
    """Connected components of "identical or sharing a half-tile block"; one label per tile."""
    parent = list(range(len(prints)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first: dict[str, int] = {}
    for i, fp in enumerate(prints):
        if fp is None:
            continue
        for key in (fp.whole, *fp.blocks):
            j = first.setdefault(key, i)
            if j != i:
                parent[find(i)] = find(j)
    return [find(i) for i in range(len(prints))]


def derive_groups(dataset: SegmentationDataset) -> list[str]:
    """Split group of every pair: ``<dataset>/<region>`` or ``<dataset>/[<region>/]<first id of its
    overlap cluster>``.

    ``group_by='region'`` (or ``auto`` with at least three regions) groups by region (sub-dataset,
    event). Otherwise tiles are grouped by overlap clusters: tiles sharing an identical half-tile
    block (CAS stride-256 neighbours) or identical whole images are linked, and each connected set
    is one group, so no overlapping crop can straddle two splits. Overlaps not aligned to half a tile
    (or between tiles scaled differently) are not detected; a pair that cannot be read is its own group.
    """
    n = len(dataset)
    regions = [dataset._region(i) for i in range(n)]
    group_by = getattr(dataset, "group_by", "auto")
    if group_by == "region" or (group_by == "auto" and len({r for r in regions if r}) >= 3):
        if not all(regions):
            raise ConfigError(f"{dataset.name}: grouping by region needs every pair in a region folder")
        return [f"{dataset.name}/{r}" for r in regions]
    prints: list[TileFingerprint | None] = []
    for i in range(n):
        try:
            prints.append(fingerprint(dataset._load(i).image))
        except BadPair:
            prints.append(None)
    labels = overlap_clusters(prints)
    ids = dataset.ids
    out = []
    for i in range(n):
        region = f"{regions[i]}/" if regions[i] else ""
        leader = ids[labels[i]].rsplit("/", 1)[-1]
        out.append(f"{dataset.name}/{region}{leader}")
    return out
