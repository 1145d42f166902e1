"""GDCLD-style GeoTIFF pairs: ``root/[<event>/]{image(s)|img}/`` + ``{mask(s)|label(s)}/``."""

from __future__ import annotations

from pathlib import Path

from edge_ls.io.labelled import find_dir
from edge_ls.training.datasets.raster_pairs import FolderLayout

GDCLD_IMAGE_DIRS = ("images", "image", "img")
GDCLD_MASK_DIRS = ("masks", "mask", "labels", "label")


class GDCLDPairs(FolderLayout):
    """GDCLD-style GeoTIFF pairs: ``root/[<event>/]{image(s)|img}/`` + ``{mask(s)|label(s)}/``.

    Each event folder (one earthquake) is a region. Images keep their georeference; masks are read
    as rasters of the same size (no reprojection: a mask on another grid is a size mismatch).
    """

    missing = "has no image/ + mask/ folders (nor event folders holding them)"

    @staticmethod
    def folders(root: Path) -> list[tuple[Path, Path, str]]:
        events = [root] if gdcld_dirs(root) else sorted(p for p in root.iterdir() if gdcld_dirs(p))
        out = []
        for ev in events:
            image_dir, mask_dir = gdcld_dirs(ev)  # type: ignore[misc]
            out.append((image_dir, mask_dir, "" if ev == root else ev.name))
        return out


def gdcld_dirs(p: Path) -> tuple[Path, Path] | None:
    """``(image folder, mask folder)`` of a GDCLD event folder, or None."""
    if not p.is_dir():
        return None
    image_dir, mask_dir = find_dir(p, GDCLD_IMAGE_DIRS), find_dir(p, GDCLD_MASK_DIRS)
    return (image_dir, mask_dir) if image_dir and mask_dir else None
