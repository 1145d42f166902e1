"""The progress record of a scene in progress: "rows [0, R) of the scene with key K are durable here".

One small JSON file, :data:`PROGRESS`, inside the scene's temporary folder (:mod:`edge_ls.io.outputs`),
replaced atomically (written under a temporary name, fsync-ed, ``os.replace``-d, folder fsync-ed) only
after the raw intermediates it vouches for were fsync-ed. A rerun with the same key reopens that folder
and resumes at row R (:mod:`edge_ls.stream`); a record that is missing, torn, has another key, another
raster size or a checksum that does not match is worth nothing: the folder is discarded and the scene
restarts from its first tile. So a wrong record can cost a full restart, never a wrong output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

#: File name of the record inside a scene's temporary folder.
PROGRESS = "progress.json"
_VERSION = 1


@dataclass(frozen=True)
class Progress:
    """Rows ``[0, rows)`` of a ``width`` x ``height`` scene keyed ``key`` are durable; the writer cut
    them in blender bands of ``band_rows`` rows (the resumed run re-feeds them in the same pieces)."""

    key: str
    rows: int
    width: int
    height: int
    band_rows: int


def _digest(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def write(folder: Path, progress: Progress) -> None:
    """Record ``progress`` atomically (call only once the rows it names are fsync-ed)."""
    body = {"version": _VERSION, **asdict(progress)}
    text = json.dumps({**body, "sha256": _digest(body)}, sort_keys=True) + "\n"
    tmp = folder / f".{PROGRESS}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / PROGRESS)
    fsync_dir(folder)


def fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable (best effort: not every platform can fsync a folder); the
    output set's commit uses it too."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read(folder: Path) -> Progress | None:
    """The folder's record, or None when there is none or it cannot be trusted (see the module)."""
    try:
        doc = json.loads((folder / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != _VERSION:
        return None
    digest = doc.pop("sha256", None)
    if digest != _digest(doc):
        return None
    try:
        progress = Progress(
            key=str(doc["key"]),
            rows=int(doc["rows"]),
            width=int(doc["width"]),
            height=int(doc["height"]),
            band_rows=int(doc["band_rows"]),
        )
    except (KeyError, TypeError, ValueError):
        return None
    if progress.band_rows < 1 or not 0 < progress.rows < progress.height:
        return None
    return progress
