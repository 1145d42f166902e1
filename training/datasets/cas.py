"""CAS Landslide: ``root/<sub-dataset>/{img,mask}/`` TIFF."""

from __future__ import annotations

from pathlib import Path

from edge_ls.training.datasets.raster_pairs import FolderLayout


class CASLandslide(FolderLayout):
    """CAS Landslide: ``root/<sub-dataset>/{img,mask}/`` TIFF (or ``root/{img,mask}/`` for one).

    ``mask/`` holds 0/1 labels; ``label/`` (inverted colours, landslide black) is ignored. Groups:
    the sub-dataset (region) when there are at least three, else overlap clusters within each
    sub-dataset (``group_by`` forces either).
    """

    missing = "has no CAS sub-dataset folders (img/ and mask/)"

    @staticmethod
    def folders(root: Path) -> list[tuple[Path, Path, str]]:
        subs = [root] if is_cas_folder(root) else sorted(p for p in root.iterdir() if is_cas_folder(p))
        return [(sub / "img", sub / "mask", sub.name) for sub in subs]


def is_cas_folder(p: Path) -> bool:
    """A CAS sub-dataset: ``img/`` and ``mask/`` side by side."""
    return p.is_dir() and (p / "img").is_dir() and (p / "mask").is_dir()
