"""From the user's inputs to scenes: globs, @lists, STAC, and folder names that can never collide."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edge_ls.errors import InputError
from edge_ls.scenes import full_key, name_scenes, path_hash, plan_scenes, safe_name, scene_out_dir


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_one_input_writes_into_out_itself(tmp_path: Path) -> None:
    [scene] = plan_scenes([touch(tmp_path / "a.tif")])
    assert scene.name == "" and scene_out_dir(tmp_path / "out", scene) == tmp_path / "out"


def test_globs_are_expanded_here_sorted_and_an_empty_one_is_an_error(tmp_path: Path) -> None:
    for name in ("b.tif", "a.tif", "sub/c.tif", "notes.txt"):
        touch(tmp_path / name)
    scenes = plan_scenes([str(tmp_path / "**" / "*.tif")])
    assert [s.name for s in scenes] == ["a", "b", "c"]
    with pytest.raises(InputError, match=r"no file matches .*\*\.jp2"):
        plan_scenes([str(tmp_path / "*.jp2")])
    with pytest.raises(InputError, match="input not found"):
        plan_scenes([str(tmp_path / "missing.tif"), str(tmp_path / "a.tif")])


def test_a_list_file_has_comments_and_paths_relative_to_itself(tmp_path: Path) -> None:
    touch(tmp_path / "d" / "x.tif"), touch(tmp_path / "d" / "y#1.tif")
    listing = tmp_path / "d" / "scenes.txt"
    listing.write_text("# my scenes\n\nx.tif   # the first\n  y#1.tif\n")
    scenes = plan_scenes([f"@{listing}"])
    assert [(s.name, s.origin) for s in scenes] == [("x", "scenes.txt:3"), ("y#1", "scenes.txt:4")]
    assert scenes[0].path == tmp_path / "d" / "x.tif"


@pytest.mark.parametrize(
    "paths",
    [
        ("a/scene.tif", "b/scene.tif"),  # same stem, two folders
        ("x.tif", "x.png"),  # same stem, two formats
        ("A.tif", "a.tif"),  # case only: one folder on macOS and Windows
    ],
    ids=["two-folders", "two-formats", "case-only"],
)
def test_names_that_would_collide_get_the_hash_of_their_path(tmp_path: Path, paths: tuple[str, str]) -> None:
    files = [touch(tmp_path / p) for p in paths]
    scenes = plan_scenes([str(f) for f in files])
    assert len({s.name.casefold() for s in scenes}) == 2
    for scene, f in zip(scenes, files, strict=True):
        assert scene.name.endswith(f"-{path_hash(f)}") and len(path_hash(f)) == 8
    assert [s.name for s in plan_scenes([str(f) for f in files])] == [s.name for s in scenes]  # stable


@pytest.mark.parametrize(
    ("stem", "safe"),
    [
        ("CON", False),
        ("com1.backup", False),
        ("..", False),
        (".hidden", False),
        ("a\\b", False),
        ('we:ird<>|?*"', False),
        ("trailing. ", False),
        ("x" * 200, False),
        ("ok-name_1.v2", True),
    ],
)
def test_unsafe_names_are_cleaned_and_never_leave_out(tmp_path: Path, stem: str, safe: bool) -> None:
    name, changed = safe_name(stem)
    assert changed is not safe and name and len(name) <= 80
    [scene] = name_scenes([(touch(tmp_path / "f.tif"), stem, None)])
    out = tmp_path / "out"
    assert (out / scene.name).resolve().parent == out.resolve() and not scene.name.startswith(".")
    assert scene.name.split(".")[0].lower() not in {"con", "com1"}
    assert scene.name.endswith(path_hash(tmp_path / "f.tif")) is not safe


def test_the_same_file_given_twice_is_one_scene(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.tif")
    scenes = name_scenes(
        [(a, "a", None), (tmp_path / "." / "a.tif", "a", None), (touch(tmp_path / "b.tif"), "b", None)]
    )
    assert [s.name for s in scenes] == ["a", "b"]


def test_the_key_changes_with_the_file_and_with_the_model(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.tif", b"1")
    [s1] = plan_scenes([a])
    os.utime(a, ns=(1, 2))
    [s2] = plan_scenes([a])
    assert s1.key != s2.key
    assert full_key(s2, {"model": "x"}).key != full_key(s2, {"model": "y"}).key
    assert full_key(s2, {"model": "x"}).key == full_key(s2, {"model": "x"}).key


def _item(item_id: str, assets: dict) -> dict:
    return {"type": "Feature", "stac_version": "1.0.0", "id": item_id, "assets": assets, "properties": {}}


def test_a_stac_item_collection_names_scenes_by_item_id(tmp_path: Path) -> None:
    (
        touch(tmp_path / "data" / "one.tif"),
        touch(tmp_path / "data" / "two_vis.tif"),
        touch(tmp_path / "two.tif"),
    )
    collection = {
        "type": "FeatureCollection",
        "features": [
            _item(
                "S2A_1",
                {
                    "thumb": {"href": "t.png", "type": "image/png"},
                    "visual": {"href": "data/one.tif", "type": "image/tiff; application=geotiff"},
                },
            ),
            _item(
                "S2A_2",
                {
                    "visual": {"href": "./data/two_vis.tif", "type": "image/tiff"},
                    "b": {"href": "two.tif", "type": "image/tiff"},
                },
            ),
        ],
    }
    path = tmp_path / "items.json"
    path.write_text(json.dumps(collection))
    scenes = plan_scenes([path])
    assert [(s.name, s.path.name, s.origin) for s in scenes] == [
        ("S2A_1", "one.tif", "items.json#S2A_1/visual"),
        ("S2A_2", "two_vis.tif", "items.json#S2A_2/visual"),
    ]
    with pytest.raises(InputError, match="has no asset 'b'"):
        plan_scenes([path], stac_asset="b")


def test_a_remote_stac_asset_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "item.json"
    path.write_text(
        json.dumps(_item("x", {"data": {"href": "https://example.com/x.tif", "type": "image/tiff"}}))
    )
    with pytest.raises(InputError, match=r"remote asset https://example.com/x.tif is not supported") as info:
        plan_scenes([path])
    assert "\n" not in str(info.value)
