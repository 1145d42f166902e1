"""The run journal: what a rerun of the same command may skip.

One JSON Lines file in ``--out`` (:data:`JOURNAL`), appended and fsync-ed line by line, so a kill at
any moment loses at most the line being written (a torn last line is ignored when read). Events:

* ``started``: a scene began (``name``, ``key``);
* ``done``: its set is committed (``key``, ``folder``, ``files``: the sha256 of each committed file);
* ``failed``: it ended with an error the user can act on (``error``, ``exit_code``);
* ``interrupted``: a signal stopped the run while the scene ran (``signal``).

A scene is skipped only when its last entry is ``done`` with the same key (input path, size, mtime,
model sha256, output options: :func:`edge_ls.scenes.full_key`) **and** every file it lists is there
with the same checksum; anything else runs again, from the rows a killed run left durable in its
temporary folder when its progress record has the same key (:mod:`edge_ls.io.progress`), else from
its first tile. The set itself is switched atomically (:mod:`edge_ls.io.outputs`), so
the journal may only lag behind the files, never claim a set that is not there.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edge_ls.errors import OutputError
from edge_ls.manifest import sha256_file
from edge_ls.scenes import Scene

#: File name of the journal inside ``--out``.
JOURNAL = ".edge-ls-journal.jsonl"


class Journal:
    """Append-only journal of one output folder (see the module docstring)."""

    def __init__(self, out_root: str | Path, *, keep_finished: bool = True) -> None:
        """``keep_finished=False`` (``--force``): no scene counts as finished, whichever backend asks."""
        self.path = Path(out_root) / JOURNAL
        self.keep_finished = keep_finished
        self._last: dict[str, dict[str, Any]] = {}
        for entry in self._read():
            self._last[entry["name"]] = entry

    def _read(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError:  # none yet (or --out is not a folder: the first write says so)
            return []
        entries = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill: the scene it was about runs again
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                entries.append(entry)
        return entries

    def last(self, scene: Scene) -> dict[str, Any] | None:
        return self._last.get(scene.name)

    def finished(self, scene: Scene, out_dir: Path) -> bool:
        """True when the scene's committed set from an earlier run can be kept (key and checksums match)."""
        entry = self._last.get(scene.name)
        if not self.keep_finished or entry is None:
            return False
        if entry.get("event") != "done" or entry.get("key") != scene.key:
            return False
        files = entry.get("files")
        if not isinstance(files, dict) or not files:
            return False
        return checksums(out_dir, files) == files

    def started(self, scene: Scene) -> None:
        self._append({"event": "started", "name": scene.name, "key": scene.key, "input": str(scene.path)})

    def done(self, scene: Scene, out_dir: Path, files: Mapping[str, str]) -> None:
        entry = {"event": "done", "name": scene.name, "key": scene.key, "folder": str(out_dir)}
        self._append({**entry, "files": dict(files)})

    def failed(self, scene: Scene, error: str, exit_code: int) -> None:
        self._append(
            {"event": "failed", "name": scene.name, "key": scene.key, "error": error, "exit_code": exit_code}
        )

    def interrupted(self, scene: Scene, signal_name: str) -> None:
        self._append({"event": "interrupted", "name": scene.name, "key": scene.key, "signal": signal_name})

    def _append(self, entry: dict[str, Any]) -> None:
        entry["time"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        self._last[entry["name"]] = entry
        line = (json.dumps(entry, sort_keys=True) + "\n").encode("utf-8")
        try:
            if self.path.parent.exists() and not self.path.parent.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # after a line torn by a kill: start a fresh one
                os.write(fd, line)  # one write of one line: O_APPEND keeps concurrent lines whole
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise OutputError(f"cannot write outputs to {self.path.parent}: {reason}") from None


def checksums(out_dir: Path, files: Mapping[str, str] | list[str]) -> dict[str, str]:
    """sha256 of each named file in ``out_dir`` (read through the set's links); missing files left out."""
    out = {}
    for name in files:
        path = Path(out_dir) / name
        if path.is_file():
            out[name] = sha256_file(path)
    return out
