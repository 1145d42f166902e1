"""GDAL-readable pairs (PNG, TIFF, GeoTIFF): the base of every raster layout's loader.

Scaling to [0, 1] is the runtime's, not a training-side copy of it: images are read through
:func:`edge_ls.io.labelled.read_unit_image` (:class:`edge_ls.io.source.RasterSource`), so a model sees
in training the values ``edge-ls detect`` will feed it for the same file (uint8 / 255 for ``8bit``;
integer reflectance / 10000 for ``reflectance``; percentile stretch of non-8-bit data for ``8bit``).
Masks are read by :func:`edge_ls.io.labelled.read_label`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edge_ls.artifact import ModelSpec
from edge_ls.errors import ConfigError, InputError
from edge_ls.io.labelled import (
    RGB,
    BadPair,
    PairRecord,
    guess_input_range,
    pair_records,
    read_label,
    read_unit_image,
)
from edge_ls.training.datasets.base import Sample, SegmentationDataset


class RasterPairs(SegmentationDataset):
    """Image/mask raster pairs read through the runtime's reader (same band choice, same scaling)."""

    def __init__(
        self,
        name: str,
        records: Sequence[PairRecord],
        bands: Sequence[str] = RGB,
        input_range: str | None = None,
        group_by: str = "auto",
    ) -> None:
        self.records = list(records)
        super().__init__(name, bands, input_range or guess_input_range(self.records))
        if group_by not in ("auto", "region", "overlap"):
            raise ConfigError(f"group_by '{group_by}' must be auto, region or overlap")
        self.group_by = group_by
        self._spec = ModelSpec(
            name=f"dataset {name}",
            tier="dataset",
            bands=self.bands,
            mean=(0.0,) * len(self.bands),
            std=(1.0,) * len(self.bands),
            input_range=self.input_range,
            gsd_m=1.0,
            tile_size=512,
            overlap=0.0,
            activation="logits",
            threshold=0.5,
        )

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def _region(self, i: int) -> str:
        return self.records[i].region

    def _load(self, i: int) -> Sample:
        rec = self.records[i]
        if rec.mask is None:
            raise BadPair("missing_mask", f"{rec.image.name} has no mask")
        image, valid = read_unit_image(rec.image, self._spec)
        mask, label_valid = read_label(rec.mask)
        if mask.shape != image.shape[:2]:
            raise BadPair(
                "size_mismatch",
                f"{rec.image.name} is {image.shape[1]}x{image.shape[0]} but its mask "
                f"{rec.mask.name} is {mask.shape[1]}x{mask.shape[0]}",
            )
        if label_valid is not None:
            valid = label_valid if valid is None else valid & label_valid
        return Sample(image, mask, rec.id, "", valid)


class FolderLayout(RasterPairs):
    """Raster pairs found under one root folder; each layout says where (:meth:`folders`).

    Why a base: every raster layout indexes its folders the same way (:func:`pair_records`, masks no
    image claims kept as :attr:`orphan_masks` for QA); only the folder names and regions differ.
    """

    #: Grouping when the caller gives none (see :func:`.grouping.derive_groups`).
    default_group_by = "auto"
    #: What the error says the root lacks when :meth:`folders` finds nothing.
    missing = "has no image and mask folders"

    def __init__(
        self,
        root: str | Path,
        bands: Sequence[str] = RGB,
        input_range: str | None = None,
        group_by: str | None = None,
    ) -> None:
        root = Path(root)
        folders = self.folders(root)
        if not folders:
            raise InputError(f"{root} {self.missing}")
        records: list[PairRecord] = []
        orphans: list[Path] = []
        for image_dir, mask_dir, region in folders:
            records += pair_records(root.name, image_dir, mask_dir, region=region, orphans=orphans)
        super().__init__(root.name, records, bands, input_range, group_by or self.default_group_by)
        self.root = root
        self.orphan_masks = orphans

    @staticmethod
    def folders(root: Path) -> list[tuple[Path, Path, str]]:
        """``(image folder, mask folder, region)`` of every part of the dataset at ``root``."""
        raise NotImplementedError
