"""Many scenes in one run: what a scene is, and what running it gave.

The types here are the contract between the parts of a multi-scene run, so each can change alone:
``edge_ls/runs.py`` (the local loop, one model load for every scene), ``edge_ls/cluster.py`` (the
same scenes on Ray actors), ``edge_ls/journal.py`` (what a rerun may skip) and ``edge-ls detect``
(the summary it prints). Turning the user's inputs (paths, globs, ``@list`` files, STAC) into
:class:`Scene` objects is also this module's job.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from edge_ls.errors import InputError

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


# -- from the user's inputs to scenes ---------------------------------------------------------------

#: Names Windows reserves for devices, with or without an extension (compared case-insensitively).
_WINDOWS_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(1, 10)} | {f"lpt{i}" for i in range(1, 10)}
)
#: Characters a folder name never gets (separators, Windows' forbidden set, controls).
_BAD_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]')
#: Longest folder name kept before the hash suffix (file systems allow 255 bytes).
_MAX_NAME = 80
#: Suffixes of a JSON file read as STAC (an Item or an ItemCollection).
_STAC_SUFFIXES = (".json", ".geojson")


def path_hash(path: Path) -> str:
    """8 hex digits of the resolved path: the stable suffix that tells same-named scenes apart."""
    return hashlib.sha256(str(path.resolve()).encode("utf-8", "surrogateescape")).hexdigest()[:8]


def base_key(path: Path) -> str:
    """The input's part of :attr:`Scene.key`: resolved path, size and mtime (ns), as one string.

    The runner adds the model's sha256 and the options that change outputs (:func:`full_key`)."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def full_key(scene: Scene, parts: dict[str, Any]) -> Scene:
    """``scene`` with ``parts`` (model sha256, output-affecting options) folded into its key."""
    text = json.dumps({"input": scene.key, **parts}, sort_keys=True, default=str)
    return replace(scene, key=hashlib.sha256(text.encode()).hexdigest())


def safe_name(stem: str) -> tuple[str, bool]:
    """A folder name made from ``stem`` and whether it had to change (then it needs a hash suffix).

    Unsafe: empty, ``.``/``..``, a leading dot (hidden, and our own bookkeeping starts with one),
    separators and Windows' forbidden characters, a trailing dot or space, a Windows device name
    (``CON``, ``com1.x``), or longer than :data:`_MAX_NAME`.
    """
    name = _BAD_CHARS.sub("_", stem).strip(" ")
    name = name.lstrip(".").rstrip(". ")
    name = name[:_MAX_NAME]
    changed = name != stem
    if not name or name.split(".", 1)[0].lower() in _WINDOWS_RESERVED:
        changed = True  # ``com1.x`` is a device too: the prefix, not the suffix, makes it a name
        name = f"_{name}" if name else "scene"
    return name, changed


def name_scenes(paths: Sequence[tuple[Path, str, str | None]]) -> list[Scene]:
    """Scenes with folder names that never collide: (path, name basis, origin) in, in order.

    A name that had to be cleaned, or that two scenes share (compared case-folded, so ``A`` and ``a``
    collide on macOS and Windows), gets ``-<8 hex of the resolved path>``; the same input always gets
    the same name in the same run's inputs. The same resolved path given twice is one scene.
    """
    seen: set[Path] = set()
    unique = []
    for path, basis, origin in paths:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        unique.append((path, *safe_name(basis), origin))
    counts = Counter(name.casefold() for _, name, _, _ in unique)
    scenes = []
    for path, name, changed, origin in unique:
        if changed or counts[name.casefold()] > 1:
            name = f"{name}-{path_hash(path)}"
        scenes.append(Scene(path=path, name=name, key=base_key(path), origin=origin))
    # A cleaned name could still meet an untouched one (``a_b`` and ``a:b``-> ``a_b-<hash>`` cannot, as
    # the hash is added; but two hashed names of one path cannot exist): check, never overwrite.
    folded = Counter(s.name.casefold() for s in scenes)
    clash = [n for n, c in folded.items() if c > 1]
    if clash:  # pragma: no cover - a sha256 prefix collision between two inputs of one run
        raise InputError(f"two inputs map to the same output folder '{clash[0]}': rename one")
    return scenes


def plan_scenes(inputs: Sequence[str | Path], *, stac_asset: str | None = None) -> list[Scene]:
    """The scenes the user's ``inputs`` name, in order: paths, globs, ``@list`` files, STAC JSON.

    * a path: the raster (a missing one is an :class:`InputError`, before anything runs);
    * a glob (``scenes/*.tif``, ``**`` recursive), expanded here, not by a shell, sorted; one that
      matches nothing is an error;
    * ``@list.txt``: one path or glob a line, ``#`` comments, relative to the list's folder;
    * a ``.json``/``.geojson`` STAC Item or ItemCollection: each item's GeoTIFF asset (``stac_asset``
      names it, else the first ``image/tiff`` asset); local hrefs only, relative to the JSON file.

    One scene keeps ``name == ""``: its outputs go directly into ``--out`` (as a single input always
    did); several get one folder each (:func:`name_scenes`).
    """
    found: list[tuple[Path, str, str | None]] = []
    for item in inputs:
        text = str(item)
        if text.startswith("@"):
            found += _from_list(Path(text[1:]), stac_asset)
        else:
            found += _expand(text, None, None, stac_asset)
    scenes = name_scenes(found)
    if len(scenes) == 1:
        return [replace(scenes[0], name="")]
    return scenes


def scene_out_dir(out_root: Path, scene: Scene) -> Path:
    """Where a scene's outputs go: ``out_root`` itself for a single scene (``name == ""``)."""
    return Path(out_root) / scene.name if scene.name else Path(out_root)


def _expand(text: str, base: Path | None, origin: str | None, stac_asset: str | None) -> list[tuple]:
    """One argument (or list line, relative to ``base``) -> [(path, name basis, origin)]; a path keeps
    the form the user gave (reports name it so)."""
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not os.path.lexists(path) and glob.has_magic(text):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise InputError(f"no file matches {text}")
        return [r for m in matches for r in _expand(m, base, origin, stac_asset)]
    if not os.path.lexists(path):
        raise InputError(f"input not found: {text}")
    if path.suffix.lower() in _STAC_SUFFIXES and path.is_file():
        stac = _from_stac(path, stac_asset)
        if stac is not None:
            return stac
    return [(path, Path(text).stem or Path(text).name, origin)]


def _from_list(listing: Path, stac_asset: str | None) -> list[tuple]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the input list {listing}: {exc.strerror or exc}") from None
    out = []
    for number, line in enumerate(lines, 1):
        # A comment is a line starting with '#', or ' #' to the end of a line ('#' inside a name stays).
        entry = re.sub(r"\s#.*$", "", line).strip()
        if not entry or entry.startswith("#"):
            continue
        out += _expand(entry, listing.parent, f"{listing.name}:{number}", stac_asset)
    if not out:
        raise InputError(f"the input list {listing} names no file")
    return out


def _from_stac(path: Path, stac_asset: str | None) -> list[tuple] | None:
    """The GeoTIFF assets of a STAC Item / ItemCollection file; None when the JSON is not STAC."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict):
        return None
    if doc.get("type") == "Feature" and "assets" in doc:
        items = [doc]
    elif doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        items = doc["features"]
    else:
        return None
    out = []
    for item in items:
        item_id = str(item.get("id") or "")
        assets = item.get("assets") or {}
        key = _pick_asset(assets, stac_asset, item_id, path)
        href = str(assets[key].get("href", ""))
        target = _local_href(href, path, item_id)
        if not target.exists():
            raise InputError(f"STAC item '{item_id}' asset '{key}' not found: {target}")
        out.append((target, item_id or target.stem, f"{path.name}#{item_id}/{key}"))
    if not out:
        raise InputError(f"the STAC file {path.name} holds no item")
    return out


def _pick_asset(assets: dict, wanted: str | None, item_id: str, path: Path) -> str:
    if wanted is not None:
        if wanted not in assets:
            raise InputError(f"STAC item '{item_id}' in {path.name} has no asset '{wanted}'")
        return wanted
    for key, asset in assets.items():
        if str(asset.get("type", "")).lower().startswith("image/tiff"):
            return key
    raise InputError(
        f"STAC item '{item_id}' in {path.name} has no image/tiff asset: name one with --stac-asset"
    )


def _local_href(href: str, stac_file: Path, item_id: str) -> Path:
    parsed = urllib.parse.urlparse(href)
    if parsed.scheme == "file":
        return Path(urllib.parse.unquote(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:  # (one letter: a Windows drive)
        raise InputError(
            f"STAC item '{item_id}': remote asset {href} is not supported (download it, or point the "
            "href at a local file)"
        )
    target = Path(href)
    return target if target.is_absolute() else stac_file.parent / target
