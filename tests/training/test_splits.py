"""Grouped splits on the real cas_hokkaido + bijie pairs: deterministic, 70/15/15, no group straddles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ls.errors import ConfigError, InputError
from edge_ls.training.datasets import SegmentationDataset, open_datasets
from edge_ls.training.splits import (
    SPLITS,
    check_splits,
    load_splits,
    make_splits,
    save_splits,
    split_groups,
    splits_for,
)


@pytest.fixture(scope="module")
def combo(real_data: Path) -> SegmentationDataset:
    return open_datasets([real_data / "cas_hokkaido", real_data / "bijie"])


def test_deterministic_and_seed_dependent(combo: SegmentationDataset) -> None:
    a, b = make_splits(combo, seed=0), make_splits(combo, seed=0)
    assert a == b
    assert make_splits(combo, seed=1) != a


def test_every_id_once_in_about_70_15_15(combo: SegmentationDataset) -> None:
    s = make_splits(combo, seed=0)
    all_ids = [i for k in SPLITS for i in s[k]]
    assert sorted(all_ids) == sorted(combo.ids) and len(all_ids) == 72
    counts = {k: len(v) for k, v in s.items()}
    assert (
        abs(counts["train"] - 50.4) <= 3
        and abs(counts["val"] - 10.8) <= 3
        and abs(counts["test"] - 10.8) <= 3
    )


def test_overlapping_tiles_never_straddle(combo: SegmentationDataset) -> None:
    group_of = dict(zip(combo.ids, combo.groups, strict=True))
    for seed in range(5):
        s = make_splits(combo, seed=seed)
        where: dict[str, set[str]] = {}
        for k, ids in s.items():
            for i in ids:
                where.setdefault(group_of[i], set()).add(k)
        assert all(len(v) == 1 for v in where.values())
        check_splits(combo, s)
    # The real overlap pair 10301/10303/10340 is one group, hence in one split.
    s = make_splits(combo, seed=0)
    homes = {k for k, ids in s.items() for i in ids if i.split("/")[1] in ("10301", "10303", "10340")}
    assert len(homes) == 1


def test_each_dataset_contributes_to_every_split(combo: SegmentationDataset) -> None:
    s = make_splits(combo, seed=0)
    for k in SPLITS:
        assert {i.split("/")[0] for i in s[k]} == {"cas_hokkaido", "bijie"}


def test_big_groups_stay_whole_and_fractions_are_respected() -> None:
    ids = [f"d/{i}" for i in range(100)]
    groups = [f"d/g{i // 10}" for i in range(100)]  # ten groups of ten
    s = split_groups(ids, groups, seed=3)
    assert [len(s[k]) for k in SPLITS] == [70, 20, 10] or [len(s[k]) for k in SPLITS] == [70, 10, 20]
    with pytest.raises(ConfigError, match="fractions"):
        split_groups(ids, groups, fractions=(0.5, 0.5, 0.5))


def test_save_load_roundtrip_and_reuse(combo: SegmentationDataset, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "split.json"
    s = splits_for(combo, path, seed=0)
    data = json.loads(path.read_text())
    assert data["seed"] == 0 and data["counts"]["train"] == len(s["train"])
    assert set(data["groups"]["train"]).isdisjoint(data["groups"]["test"])
    assert load_splits(path) == s
    # A file is reused as it is, whatever the seed asked for now.
    assert splits_for(combo, path, seed=7) == s
    # The interim trainer's bare format loads too.
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"train": ["a"], "val": [], "test": ["b"]}))
    assert load_splits(bare) == {"train": ["a"], "val": [], "test": ["b"]}


def test_split_file_problems_are_named(combo: SegmentationDataset, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        load_splits(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        load_splits(bad)
    bad.write_text(json.dumps({"train": [], "holdout": []}))
    with pytest.raises(ConfigError, match="holdout"):
        load_splits(bad)
    other = tmp_path / "other.json"
    save_splits(other, {"train": ["elsewhere/1"], "val": [], "test": []})
    with pytest.raises(ConfigError, match="elsewhere/1"):
        splits_for(combo, other)
    s = make_splits(combo, seed=0)
    cluster = [i for i in combo.ids if i.split("/")[1] in ("10025", "10026")]
    moved = {k: [i for i in v if i != cluster[1]] for k, v in s.items()}
    home = next(k for k in SPLITS if cluster[0] in s[k])
    moved[next(k for k in SPLITS if k != home)].append(cluster[1])
    with pytest.raises(ConfigError, match="straddles"):
        check_splits(combo, moved)
