"""Label QA: what is wrong with a dataset's pairs, counted, with example ids."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edge_ls.io.labelled import BadPair, mask_kind, read_label_band
from edge_ls.training.datasets.base import SegmentationDataset
from edge_ls.training.datasets.concat import ConcatDataset
from edge_ls.training.datasets.grouping import TileFingerprint, fingerprint, overlap_clusters
from edge_ls.training.datasets.landslide4sense import read_h5

QA_SKIP_REASONS = ("unreadable", "size_mismatch", "mask_values", "missing_mask")


def qa_report(dataset: SegmentationDataset, max_examples: int = 10) -> dict:
    """Label QA over every pair: counts (and a few example ids) of each problem.

    ``skipped``: pairs that cannot be used (unreadable/corrupt, size mismatch, non-binary mask,
    missing mask); they are skipped by training, not fatal. ``mask_0_255``: masks stored as 0/255,
    read as 0/1. ``mask_ignore_255``: 0/1 masks with 255 = ignore. ``empty_masks``: no landslide pixel
    (kept: true negatives). ``duplicates``: tiles whose image is identical to an earlier tile's.
    ``overlapping_tiles``: tiles sharing a half-tile block with another (not identical) tile;
    ``overlap_clusters``: connected sets of more than one such tile.
    """
    problems: dict[str, list[str]] = {
        k: []
        for k in (
            *QA_SKIP_REASONS,
            "mask_0_255",
            "mask_ignore_255",
            "empty_masks",
            "duplicates",
            "overlapping_tiles",
        )
    }
    prints: list[TileFingerprint | None] = []
    ids = dataset.ids
    positive = pixels = 0
    for i in range(len(dataset)):
        try:
            sample = dataset._load(i)
        except BadPair as exc:
            problems[exc.reason].append(ids[i])
            prints.append(None)
            continue
        prints.append(fingerprint(sample.image))
        kind = _mask_file_kind(dataset, i)
        if kind in ("0_255", "ignore_255"):
            problems[f"mask_{kind}"].append(ids[i])
        m = sample.mask if sample.valid is None else sample.mask[sample.valid]
        positive += int(m.sum())
        pixels += int(m.size)
        if not m.any():
            problems["empty_masks"].append(ids[i])
    seen: dict[str, int] = {}
    duplicate_sets: dict[int, list[str]] = {}
    for i, fp in enumerate(prints):
        if fp is None:
            continue
        j = seen.setdefault(fp.whole, i)
        if j != i:
            problems["duplicates"].append(ids[i])
            duplicate_sets.setdefault(j, [ids[j]]).append(ids[i])
    block_owner: dict[str, set[str]] = {}
    for i, fp in enumerate(prints):
        if fp is not None and seen[fp.whole] == i:
            for b in fp.blocks:
                block_owner.setdefault(b, set()).add(fp.whole)
    overlapping = [
        ids[i]
        for i, fp in enumerate(prints)
        if fp is not None and seen[fp.whole] == i and any(len(block_owner[b]) > 1 for b in fp.blocks)
    ]
    problems["overlapping_tiles"] = overlapping
    labels = overlap_clusters(prints)
    sizes = Counter(labels[i] for i, fp in enumerate(prints) if fp is not None)
    report: dict = {
        "dataset": dataset.name,
        "pairs": len(dataset),
        "usable": len(dataset) - sum(len(problems[k]) for k in QA_SKIP_REASONS),
        "skipped": {k: len(problems[k]) for k in QA_SKIP_REASONS},
        **{k: len(v) for k, v in problems.items() if k not in QA_SKIP_REASONS},
        "overlap_clusters": sum(1 for s in sizes.values() if s > 1),
        "orphan_masks": len(_orphans(dataset)),
        "duplicate_sets": list(duplicate_sets.values())[:max_examples],
        "landslide_fraction": positive / pixels if pixels else 0.0,
        "examples": {k: v[:max_examples] for k, v in problems.items() if v},
    }
    return report


def _orphans(dataset: SegmentationDataset) -> list[Path]:
    if isinstance(dataset, ConcatDataset):
        return [p for m in dataset.members for p in _orphans(m)]
    return list(dataset.orphan_masks)


def _mask_file_kind(dataset: SegmentationDataset, i: int) -> str:
    """How pair ``i``'s mask file is encoded (re-reads the mask; only QA needs it)."""
    if isinstance(dataset, ConcatDataset):
        member, j = dataset._locate(i)
        return _mask_file_kind(member, j)
    rec = getattr(dataset, "records", [None] * (i + 1))[i]
    if rec is None or rec.mask is None:
        return "binary"
    try:
        values = read_h5(rec.mask, "mask") if rec.mask.suffix == ".h5" else read_label_band(rec.mask)
    except BadPair:
        return "other"
    return mask_kind(values)
