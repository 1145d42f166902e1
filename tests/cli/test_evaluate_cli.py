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
