"""The run journal: a scene is skipped only when its key matches and its committed set is intact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_ls.errors import OutputError
from edge_ls.journal import JOURNAL, Journal, checksums
from edge_ls.scenes import Scene


def _scene(key: str = "k1") -> Scene:
    return Scene(path=Path("/in/a.tif"), name="a", key=key)


def _commit(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mask.tif").write_bytes(b"mask")
    (folder / "report.json").write_text("{}")
    return checksums(folder, ["mask.tif", "report.json"])


def test_a_done_scene_with_the_same_key_and_intact_files_is_finished(tmp_path: Path) -> None:
    files = _commit(tmp_path / "a")
    journal = Journal(tmp_path)
    journal.started(_scene())
    assert not journal.finished(_scene(), tmp_path / "a")  # started is not done
    journal.done(_scene(), tmp_path / "a", files)
    again = Journal(tmp_path)  # as a rerun reads it
    assert again.finished(_scene(), tmp_path / "a")
    assert not again.finished(_scene("k2"), tmp_path / "a")  # another model, options or input file
    assert not Journal(tmp_path, keep_finished=False).finished(_scene(), tmp_path / "a")  # --force
    (tmp_path / "a" / "mask.tif").write_bytes(b"edited")
    assert not Journal(tmp_path).finished(_scene(), tmp_path / "a")  # checksum differs
    (tmp_path / "a" / "mask.tif").unlink()
    assert not Journal(tmp_path).finished(_scene(), tmp_path / "a")  # file gone


def test_a_line_torn_by_a_kill_is_ignored_and_later_events_win(tmp_path: Path) -> None:
    files = _commit(tmp_path / "a")
    journal = Journal(tmp_path)
    journal.done(_scene(), tmp_path / "a", files)
    with (tmp_path / JOURNAL).open("a") as f:
        f.write('{"event": "started", "name": "a", "ke')  # the kill came mid-line
    assert Journal(tmp_path).finished(_scene(), tmp_path / "a")
    Journal(tmp_path).started(_scene())  # a later run began the scene again (after the torn line)
    assert not Journal(tmp_path).finished(_scene(), tmp_path / "a")
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "started"


def test_an_unwritable_journal_is_an_output_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match=r"^cannot write outputs to .*file: Not a directory$"):
        Journal(blocker).started(_scene())
