"""A committed set is replaced as a whole: a failure (or kill) at any file-system call of the commit
leaves either the complete old set or the complete new set, never a mix (issue 13, defect 4)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from edge_ls.errors import OutputError
from edge_ls.io import outputs as outputs_mod
from edge_ls.io.outputs import OutputOptions, OutputSet

SIZE = 64


def _set(out_dir: Path, *, uncertainty: bool = False, protect: tuple = ()) -> OutputSet:
    return OutputSet(
        out_dir,
        width=SIZE,
        height=SIZE,
        crs="EPSG:32633",
        transform=Affine(10, 0, 500000, 0, -10, 4000000),
        georeferenced=True,
        pixel_area_m2=100.0,
        options=OutputOptions(threshold=0.5, quicklook_max_size=32, uncertainty=uncertainty),
        protect=protect,
    )


def _commit(out_dir: Path, seed: int, **kw) -> dict[str, str]:
    prob = np.random.default_rng(seed).random((SIZE, SIZE), dtype=np.float32)
    with _set(out_dir, **kw) as out:
        extra = {"uncertainty": prob * 0.1} if kw.get("uncertainty") else {}
        out.write_rows(0, prob, **extra)
        out.commit({"run": seed})
    return _seen(out_dir)


def _seen(out_dir: Path) -> dict[str, str]:
    """What a reader sees through the plain names: name -> sha256 of the file (only names that resolve)."""
    seen = {}
    for entry in sorted(out_dir.iterdir()):
        if not entry.name.startswith(".") and entry.is_file():
            seen[entry.name] = hashlib.sha256(entry.read_bytes()).hexdigest()
    return seen


_FS_CALLS = ("rename", "replace", "symlink", "unlink", "fsync")


@pytest.mark.parametrize(
    "uncertainty_after",
    [pytest.param(False, id="same-files"), pytest.param(True, id="new-file-added", marks=pytest.mark.slow)],
)
def test_a_kill_at_every_file_system_call_of_the_commit_never_leaves_a_mix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, uncertainty_after: bool
) -> None:
    reference = tmp_path / "reference"
    old = _commit(reference / "old", 1)
    new = _commit(reference / "new", 2, uncertainty=uncertainty_after)
    assert old.keys() <= new.keys() and old["probability.tif"] != new["probability.tif"]
    kills = 0
    for k in range(1, 200):
        out_dir = tmp_path / f"k{k}"
        assert _commit(out_dir, 1) == old
        calls = {"n": 0, "kill_at": k}

        def killing(real, calls=calls):
            def call(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == calls["kill_at"]:
                    raise SystemExit("killed")  # not an OSError: nothing of ours handles it
                return real(*args, **kwargs)

            return call

        prob = np.random.default_rng(2).random((SIZE, SIZE), dtype=np.float32)
        out = _set(out_dir, uncertainty=uncertainty_after)
        out.write_rows(0, prob, **({"uncertainty": prob * 0.1} if uncertainty_after else {}))
        out.finalize()
        # A kill runs no cleanup: abort does nothing, as after SIGKILL.
        monkeypatch.setattr(out, "abort", lambda: None)
        with monkeypatch.context() as m:
            for name in _FS_CALLS:
                m.setattr(os, name, killing(getattr(os, name)))
            m.setattr(shutil, "rmtree", killing(shutil.rmtree))
            try:
                out.commit({"run": 2})
            except SystemExit:
                kills += 1
            else:
                assert _seen(out_dir) == new
                break
        seen = _seen(out_dir)
        assert seen in (old, new), f"kill at call {k} left a mix: {sorted(seen)}"
        # The next run (another pid) cleans the killed run's folders up and commits over either set.
        _as_dead_process(out_dir)
        assert _commit(out_dir, 3) == _commit(tmp_path / f"clean{k}", 3)
        assert sorted(p.name for p in out_dir.iterdir() if p.name.startswith(".")) == [
            ".current",
            os.readlink(out_dir / ".current"),
        ]
    assert kills >= 8  # every call was hit once: version rename, links, the switch, the cleanup


def _as_dead_process(out_dir: Path) -> None:
    """Give this process' leftovers (not the committed version) the pid of a process that is gone."""
    current = os.readlink(out_dir / ".current")
    for entry in out_dir.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(f"-{os.getpid()}") and entry.name != current:
            entry.rename(out_dir / entry.name.replace(f"-{os.getpid()}", "-999999999"))


def test_readers_open_the_outputs_through_the_links(tmp_path: Path) -> None:
    _commit(tmp_path, 1)
    _commit(tmp_path, 2)  # a second commit replaces the set; the links stay
    assert (tmp_path / "probability.tif").is_symlink()
    with rasterio.open(tmp_path / "probability.tif") as ds:
        assert ds.width == SIZE and ds.crs.to_epsg() == 32633 and ds.overviews(1) is not None
    assert len([p for p in tmp_path.iterdir() if p.name.startswith(".edge_ls.")]) == 1


def test_a_name_of_the_old_set_missing_from_the_new_one_goes(tmp_path: Path) -> None:
    assert "uncertainty.tif" in _commit(tmp_path, 1, uncertainty=True)
    assert "uncertainty.tif" not in _commit(tmp_path, 2)
    assert not os.path.lexists(tmp_path / "uncertainty.tif")


def test_a_folder_written_by_an_older_edge_ls_is_migrated(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    _commit(tmp_path / "links", 1)
    shutil.copytree(tmp_path / "links", flat, symlinks=False, ignore=shutil.ignore_patterns(".*"))
    assert not (flat / "report.json").is_symlink()
    new = _commit(flat, 2)
    assert new == _commit(tmp_path / "fresh", 2) and (flat / "report.json").is_symlink()


def test_an_input_named_like_an_output_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    tmp_path.joinpath("probability.tif").write_bytes(b"the user's input")
    with pytest.raises(OutputError, match=r"probability.tif there is an input of this run"):
        _set(tmp_path, protect=(tmp_path / "probability.tif",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["probability.tif"]
    assert tmp_path.joinpath("probability.tif").read_bytes() == b"the user's input"


def test_a_folder_named_like_an_output_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "mask.tif").mkdir()
    (tmp_path / "mask.tif" / "keep").write_text("x")
    with pytest.raises(OutputError, match=r"^cannot write outputs to .*: mask.tif is a folder there"):
        _set(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mask.tif"]


def test_where_links_cannot_be_made_the_files_are_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*_args, **_kwargs):
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_links)
    monkeypatch.setattr(outputs_mod, "_SYMLINKS", {})
    seen = _commit(tmp_path, 1)
    assert seen == _commit(tmp_path / "again", 1) and "report.json" in seen
    assert not any(p.is_symlink() or p.name.startswith(".") for p in tmp_path.iterdir() if p.name != "again")
