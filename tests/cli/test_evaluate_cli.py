"""``edge-ls evaluate`` says which split it scored, and scores a lone folder whole."""

from __future__ import annotations

import json
from pathlib import Path

from edge_ls.cli import main
from edge_ls.cli.evaluate import choose_split


def test_a_single_folder_without_split_file_is_scored_whole(real_data: Path, capsys) -> None:
    folder = real_data / "bijie"
    tiles = len(list((folder / "images").iterdir()))
    assert main(["evaluate", "--model", "edge-nano", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "all" and result["tiles"] == tiles == 36  # not its 15% "test" share
    assert "scored whole" in result["split_reason"]
    assert main(["evaluate", "--model", "edge-nano", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "on all split" in out and "36 tiles" in out and "scored whole" in out  # said in the text too


def test_the_split_chosen_is_explained() -> None:
    assert choose_split(None, ["a"], None)[0] == "all"
    split, why = choose_split(None, ["a", "b"], None)
    assert split == "test" and "70/15/15" in why
    split, why = choose_split(None, ["a"], "split.json")
    assert split == "test" and "split file" in why
    assert choose_split("val", ["a"], None) == ("val", "--split val")


def test_a_mistyped_split_file_is_refused_not_written(tmp_path: Path, real_data: Path, capsys) -> None:
    from tests.training import fakes

    root = fakes.folder_pairs(tmp_path, real_data, n=3)
    typo = tmp_path / "splts.json"
    assert main(["evaluate", "--model", "edge-nano", str(root), "--split-file", str(typo)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split file not found" in err[0] and "--new-split" in err[0]
    assert not typo.exists()  # nothing silently written there


def test_new_split_writes_the_split_file_when_asked(tmp_path: Path, real_data: Path, capsys) -> None:
    from tests.training import fakes

    root = fakes.folder_pairs(tmp_path, real_data, n=3)
    path = tmp_path / "split.json"
    args = ["evaluate", "--model", "edge-nano", str(root), "--split-file", str(path), "--split", "all"]
    assert main([*args, "--new-split", "--json"]) == 0
    assert path.is_file()
    capsys.readouterr()
    assert main([*args, "--new-split"]) == 2  # never overwrites an existing split
    assert "already exists" in capsys.readouterr().err


def test_all_zero_masks_give_a_null_auc_with_the_reason(tmp_path: Path, real_data: Path, capsys) -> None:
    import cv2
    import numpy as np

    from tests.training import fakes

    root = fakes.folder_pairs(tmp_path, real_data, n=2)
    for mask in (root / "masks").iterdir():
        cv2.imwrite(str(mask), np.zeros((512, 512), np.uint8))
    assert main(["evaluate", "--model", "edge-nano", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["auc"] is None and result["recall"] is None
    assert result["undefined_reasons"]["auc"] == "undefined: no positive pixels"
    assert isinstance(result["accuracy"], float)  # defined metrics stay numbers
    assert main(["evaluate", "--model", "edge-nano", str(root)]) == 0
    assert "undefined: no positive pixels" in capsys.readouterr().out


def test_skipped_tiles_are_listed_in_json(tmp_path: Path, real_data: Path, capsys) -> None:
    from tests.training import fakes

    root = fakes.planted_problems(tmp_path, real_data)
    assert main(["evaluate", "--model", "edge-nano", str(root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    skipped = result["skipped"]
    assert len(skipped) >= 3 and all(set(s) == {"tile", "reason"} and s["reason"] for s in skipped)
    assert result["tiles"] + len(skipped) >= 8
