"""``root/{train,validation,test}/images/*`` + ``masks/``: a dataset that ships its own split."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_ls.io.labelled import RGB
from edge_ls.training.datasets.raster_pairs import FolderLayout

#: Folder names of a dataset that ships its own split (``root/<split>/{images,masks}``).
GIVEN_SPLIT_DIRS: dict[str, str] = {"train": "train", "validation": "val", "val": "val", "test": "test"}


class SplitFolders(FolderLayout):
    """``root/{train,validation,test}/images/*`` + ``masks/<stem>.png``: a dataset with its own split.

    The given split is kept (:attr:`given_splits`); ids are ``<dataset>/<split>/<stem>`` and each
    split folder is one group, so no grouped re-split can mix them.
    """

    default_group_by = "region"
    missing = "has no train/, validation/ or test/ folders each holding images/ and masks/"

    def __init__(self, root: str | Path, bands: Sequence[str] = RGB, input_range: str | None = None) -> None:
        super().__init__(root, bands, input_range)
        #: The dataset's own split name (train/val/test) of every id.
        self.given_splits = {r.id: GIVEN_SPLIT_DIRS[r.region] for r in self.records}

    @staticmethod
    def folders(root: Path) -> list[tuple[Path, Path, str]]:
        return [(folder / "images", folder / "masks", folder.name) for folder, _ in split_dirs(root)]


def split_dirs(root: Path) -> list[tuple[Path, str]]:
    """The ``(folder, split)`` pairs of a dataset laid out by split; empty when it is not."""
    out = []
    for name, split in GIVEN_SPLIT_DIRS.items():
        folder = root / name
        if (folder / "images").is_dir() and (folder / "masks").is_dir():
            out.append((folder, split))
    return out
