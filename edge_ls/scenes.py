"""Many scenes in one run: what a scene is, and what running it gave.

The types here are the contract between the parts of a multi-scene run, so each can change alone:
``edge_ls/runs.py`` (the local loop, one model load for every scene), ``edge_ls/cluster.py`` (the
same scenes on Ray actors), ``edge_ls/journal.py`` (what a rerun may skip) and ``edge-ls detect``
(the summary it prints). Turning the user's inputs (paths, globs, ``@list`` files, STAC) into
:class:`Scene` objects is also this module's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

#: How a scene ended. ``skipped``: a finished set from an earlier run with the same key was kept.
Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class Scene:
    """One input raster and the output folder it owns inside ``--out``."""

    #: The raster as the user named it (a local path; a STAC asset resolved to its href).
    path: Path
    #: Folder name under ``--out``: unique within the run, never a path that leaves ``--out``.
    name: str
    #: What makes two runs of this scene the same work (resolved path, size, mtime, model sha256,
    #: options): the journal skips a scene only when its key matches.
    key: str
    #: Where the scene came from when not a plain path (a STAC item id, a list file line), for reports.
    origin: str | None = None


@dataclass(frozen=True)
class SceneResult:
    """What running (or skipping) one scene gave; the run summary is a list of these."""

    scene: Scene
    status: Status
    out_dir: Path
    #: The committed ``report.json`` as a dict (done or skipped); None when the scene failed.
    report: dict[str, Any] | None = None
    #: One line, as the CLI would print it, when the scene failed.
    error: str | None = None
    #: The exit code the error class maps to (``edge_ls.errors``); 0 when done or skipped.
    exit_code: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
