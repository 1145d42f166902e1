"""``root/images/*`` + ``root/masks/<stem>.png``: the layout of ``shared/data/real``."""

from __future__ import annotations

from pathlib import Path

from edge_ls.training.datasets.raster_pairs import FolderLayout


class FolderPairs(FolderLayout):
    """``root/images/*`` + ``root/masks/<stem>.png`` (the layout of ``shared/data/real``).

    No region information: groups are overlap clusters (see :func:`.grouping.derive_groups`).
    """

    missing = "has no images/ and masks/ folders"

    @staticmethod
    def folders(root: Path) -> list[tuple[Path, Path, str]]:
        if not (root / "images").is_dir() or not (root / "masks").is_dir():
            return []
        return [(root / "images", root / "masks", "")]
