"""Which loader reads a folder: the layout is detected from the folder names."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_ls.errors import InputError
from edge_ls.io.labelled import RGB, raster_files
from edge_ls.training.datasets.base import SegmentationDataset
from edge_ls.training.datasets.cas import CASLandslide, is_cas_folder
from edge_ls.training.datasets.concat import ConcatDataset
from edge_ls.training.datasets.folder import FolderPairs
from edge_ls.training.datasets.gdcld import GDCLDPairs, gdcld_dirs
from edge_ls.training.datasets.landslide4sense import Landslide4Sense
from edge_ls.training.datasets.split_folders import SplitFolders, split_dirs


def open_dataset(
    path: str | Path, bands: Sequence[str] = RGB, input_range: str | None = None
) -> SegmentationDataset:
    """The loader matching the folder layout at ``path`` (the layouts are listed in the error below)."""
    root = Path(path)
    if not root.is_dir():
        raise InputError(f"dataset folder not found: {root}")
    if (root / "images").is_dir() and (root / "masks").is_dir() and _png_masks(root / "masks"):
        return FolderPairs(root, bands, input_range)
    if split_dirs(root):
        return SplitFolders(root, bands, input_range)
    if any(root.glob("img/*.h5")) or any(root.glob("TrainData/img/*.h5")):
        return Landslide4Sense(root, bands, input_range or "reflectance")
    if is_cas_folder(root) or any(is_cas_folder(p) for p in root.iterdir()):
        return CASLandslide(root, bands, input_range)
    if gdcld_dirs(root) or any(gdcld_dirs(p) for p in root.iterdir()):
        return GDCLDPairs(root, bands, input_range)
    raise InputError(
        f"{root} is not a dataset layout edge-ls knows: images/ + masks/<stem>.png, "
        "{train,validation,test}/images/ + masks/, CAS img/ + mask/ "
        "(per sub-dataset), Landslide4Sense img/*.h5 + mask/*.h5, or GeoTIFF image/ + mask/ pairs"
    )


def open_datasets(
    paths: Sequence[str | Path], bands: Sequence[str] = RGB, input_range: str | None = None
) -> SegmentationDataset:
    """One dataset for one path; a :class:`ConcatDataset` for several."""
    members = [open_dataset(p, bands, input_range) for p in paths]
    if len(members) > 1 and input_range is None and len({m.input_range for m in members}) > 1:
        members = [
            open_dataset(p, bands, "8bit" if all(m.input_range == "8bit" for m in members) else "reflectance")
            for p in paths
        ]
    return members[0] if len(members) == 1 else ConcatDataset(members)


def _png_masks(folder: Path) -> bool:
    masks = raster_files(folder)
    return bool(masks) and sum(m.suffix.lower() == ".png" for m in masks) * 2 >= len(masks)
