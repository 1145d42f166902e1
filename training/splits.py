"""Deterministic, grouped train/val/test splits, written to and read from a JSON file.

Whole groups are assigned (see :func:`edge_ls.training.datasets.derive_groups`: region/sub-dataset
when known, else clusters of overlapping tiles, e.g. CAS 512-px windows cut at stride 256), so an
overlapping crop never sits in two splits. Groups are ordered by a SHA-256 of ``seed:group`` (stable
across Python versions and machines, unlike ``hash``), then each goes to the split furthest below its
target share of tiles. A combination of datasets is split per dataset (the first component of the
group, ``<dataset>/...``), so every dataset contributes to every split in the same proportions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_ls.errors import ConfigError, InputError
from edge_ls.training.datasets import SegmentationDataset

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
SPLIT_FILE_VERSION = 1


def make_splits(
    dataset: SegmentationDataset, seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """``{"train": ids, "val": ids, "test": ids}``: grouped, per-dataset stratified, deterministic.

    A dataset that ships its own split (``given_splits``, e.g. ``l4s_rgb``) keeps it; only the rest
    is split here.
    """
    given: dict[str, str] = dict(getattr(dataset, "given_splits", {}) or {})
    rest = [(i, g) for i, g in zip(dataset.ids, dataset.groups, strict=True) if i not in given]
    out = split_groups([i for i, _ in rest], [g for _, g in rest], seed, fractions)
    if given:
        order_of = {sid: k for k, sid in enumerate(dataset.ids)}
        for sid, split in given.items():
            out[split].append(sid)
        out = {s: sorted(v, key=order_of.__getitem__) for s, v in out.items()}
    return out


def split_groups(
    ids: Sequence[str], groups: Sequence[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """The assignment of :func:`make_splits` from plain (id, group) lists."""
    if len(ids) != len(groups):
        raise ValueError(f"{len(ids)} ids but {len(groups)} groups")
    if len(fractions) != len(SPLITS) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ConfigError(f"split fractions {list(fractions)} must be three non-negative shares summing to 1")
    members: dict[str, list[str]] = {}
    for sid, g in zip(ids, groups, strict=True):
        members.setdefault(g, []).append(sid)
    strata: dict[str, list[str]] = {}
    for g in members:
        strata.setdefault(g.split("/", 1)[0], []).append(g)
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for stratum in sorted(strata):
        order = sorted(strata[stratum], key=lambda g: _rank(seed, g))
        total = sum(len(members[g]) for g in order)
        counts = [0] * len(SPLITS)
        for g in order:
            deficit = [fractions[k] * total - counts[k] for k in range(len(SPLITS))]
            k = max(range(len(SPLITS)), key=lambda k: (deficit[k], -k))
            counts[k] += len(members[g])
            out[SPLITS[k]].extend(members[g])
    order_of = {sid: i for i, sid in enumerate(ids)}
    return {s: sorted(v, key=order_of.__getitem__) for s, v in out.items()}


def _rank(seed: int, group: str) -> str:
    return hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()


def check_splits(dataset: SegmentationDataset, splits: Mapping[str, Sequence[str]]) -> None:
    """Refuse a split that does not fit ``dataset``: unknown ids, an id twice, a group in two splits."""
    known = set(dataset.ids)
    seen: dict[str, str] = {}
    for name, ids in splits.items():
        for sid in ids:
            if sid not in known:
                raise ConfigError(
                    f"split '{name}' names '{sid}', which is not in {dataset.name}: "
                    "the split file belongs to other data (delete it to make a new one)"
                )
            if sid in seen:
                raise ConfigError(f"'{sid}' is in both '{seen[sid]}' and '{name}' splits")
            seen[sid] = name
    group_of = dict(zip(dataset.ids, dataset.groups, strict=True))
    where: dict[str, str] = {}
    for sid, name in seen.items():
        g = group_of[sid]
        if where.setdefault(g, name) != name:
            raise ConfigError(f"group '{g}' straddles the '{where[g]}' and '{name}' splits")


def save_splits(
    path: str | Path,
    splits: Mapping[str, Sequence[str]],
    *,
    seed: int | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    dataset: SegmentationDataset | None = None,
) -> Path:
    """Write the split (and how it was made, with the groups when ``dataset`` is given) as JSON."""
    path = Path(path)
    data: dict = {"version": SPLIT_FILE_VERSION, "seed": seed, "fractions": list(fractions)}
    if dataset is not None:
        group_of = dict(zip(dataset.ids, dataset.groups, strict=True))
        data["dataset"] = dataset.name
        data["groups"] = {s: sorted({group_of[i] for i in ids}) for s, ids in splits.items()}
    data["counts"] = {s: len(ids) for s, ids in splits.items()}
    data["splits"] = {s: list(ids) for s, ids in splits.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)
    except OSError as exc:
        from edge_ls.errors import OutputError

        raise OutputError(f"cannot write the split file {path}: {exc.strerror or exc}") from None
    return path


def load_splits(path: str | Path) -> dict[str, list[str]]:
    """``{"train": ids, "val": ids, "test": ids}`` from a split file (also a bare mapping of lists)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"split file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"split file {path} is not readable JSON ({exc})") from None
    splits = data.get("splits", data) if isinstance(data, dict) else None
    if not isinstance(splits, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in splits.values()
    ):
        raise ConfigError(f"split file {path} must map split names to lists of ids")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ConfigError(f"split file {path} has unknown split(s) {unknown} (known: {', '.join(SPLITS)})")
    return {s: list(splits.get(s, [])) for s in SPLITS}


def splits_for(
    dataset: SegmentationDataset,
    path: str | Path | None,
    seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> dict[str, list[str]]:
    """The split in ``path`` (checked against ``dataset``), or a new one, saved there when ``path``."""
    if path and Path(path).is_file():
        splits = load_splits(path)
        check_splits(dataset, splits)
        return splits
    splits = make_splits(dataset, seed, fractions)
    if path:
        save_splits(path, splits, seed=seed, fractions=fractions, dataset=dataset)
    return splits
