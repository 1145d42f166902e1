"""Label QA: exact counts of planted problems, real overlaps."""

from __future__ import annotations

from pathlib import Path

from edge_ls.training.datasets import FolderPairs, open_dataset, qa_report
from tests.training import fakes


def test_qa_finds_planted_problems_with_exact_counts(tmp_path: Path, real_data: Path) -> None:
    ds = open_dataset(fakes.planted_problems(tmp_path, real_data))
    assert len(ds) == 9
    report = qa_report(ds)
    assert report["skipped"] == {"unreadable": 1, "size_mismatch": 1, "mask_values": 1, "missing_mask": 1}
    assert report["usable"] == 5
    assert report["mask_0_255"] == 1 and report["empty_masks"] == 1 and report["orphan_masks"] == 1
    # dup.png duplicates its source; empty.png duplicates 10089 (same image, other mask); nomask is
    # unreadable as a pair, so it does not count.
    assert report["duplicates"] == 2
    assert sorted(map(sorted, report["duplicate_sets"])) == [
        ["cas_hokkaido/10080", "cas_hokkaido/dup"],
        ["cas_hokkaido/10089", "cas_hokkaido/empty"],
    ]
    assert report["examples"]["unreadable"] == ["cas_hokkaido/10026"]
    assert report["examples"]["size_mismatch"] == ["cas_hokkaido/10025"]
    assert report["examples"]["mask_0_255"] == ["cas_hokkaido/10018"]
    # 10025 and 10026 overlap in the real data, but neither pair is readable here.
    assert report["overlapping_tiles"] == 0


def test_qa_counts_real_overlaps(hokkaido: FolderPairs) -> None:
    report = qa_report(hokkaido)
    assert report["usable"] == 36 and sum(report["skipped"].values()) == 0
    assert report["duplicates"] == 0 and report["empty_masks"] == 0
    assert report["overlapping_tiles"] == 13 and report["overlap_clusters"] == 6
    assert 0.10 < report["landslide_fraction"] < 0.13  # README: mean share 11.6 %
