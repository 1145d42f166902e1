"""Labelled landslide datasets as (image, mask) samples, scaled exactly as the runtime scales them.

One module per concern (TorchGeo style, one loader per file):

- :mod:`.base`: :class:`Sample`, :class:`SegmentationDataset` (the interface), band names, GSDs;
- loaders: :mod:`.raster_pairs` (GDAL-readable pairs, the base of the next four), :mod:`.folder`
  (``images/`` + ``masks/``), :mod:`.split_folders` (``train/validation/test``), :mod:`.cas`
  (CAS Landslide), :mod:`.gdcld` (GDCLD events), :mod:`.landslide4sense` (HDF5), :mod:`.concat`
  (several as one);
- :mod:`.layout`: which loader reads a folder (:func:`open_dataset`, :func:`open_datasets`);
- :mod:`.grouping`: split groups (overlap clusters), :mod:`.stats`: band statistics,
  :mod:`.qa`: label QA.

Finding and reading pairs on disk is not training's: :mod:`edge_ls.io.labelled` (runtime) does it
for training, export and evaluation alike; the loaders here wrap it. A new dataset layout is a new
module here (a :class:`SegmentationDataset` subclass) plus one branch in :func:`open_dataset`.
"""

from edge_ls.io.labelled import RASTER_SUFFIXES, RGB, BadPair, PairRecord
from edge_ls.training.datasets.base import (
    BAND_ALIASES,
    KNOWN_GSD_M,
    Sample,
    SegmentationDataset,
    canonical_band,
    dataset_gsd,
    indices_of,
)
from edge_ls.training.datasets.cas import CASLandslide
from edge_ls.training.datasets.concat import ConcatDataset
from edge_ls.training.datasets.folder import FolderPairs
from edge_ls.training.datasets.gdcld import GDCLDPairs
from edge_ls.training.datasets.grouping import TileFingerprint, derive_groups, fingerprint, overlap_clusters
from edge_ls.training.datasets.landslide4sense import L4S_BANDS, L4S_DIVISOR, Landslide4Sense, l4s_unit
from edge_ls.training.datasets.layout import open_dataset, open_datasets
from edge_ls.training.datasets.qa import QA_SKIP_REASONS, qa_report
from edge_ls.training.datasets.raster_pairs import RasterPairs
from edge_ls.training.datasets.split_folders import GIVEN_SPLIT_DIRS, SplitFolders, split_dirs
from edge_ls.training.datasets.stats import band_stats

__all__ = [
    "BAND_ALIASES",
    "GIVEN_SPLIT_DIRS",
    "KNOWN_GSD_M",
    "L4S_BANDS",
    "L4S_DIVISOR",
    "QA_SKIP_REASONS",
    "RASTER_SUFFIXES",
    "RGB",
    "BadPair",
    "CASLandslide",
    "ConcatDataset",
    "FolderPairs",
    "GDCLDPairs",
    "Landslide4Sense",
    "PairRecord",
    "RasterPairs",
    "Sample",
    "SegmentationDataset",
    "SplitFolders",
    "TileFingerprint",
    "band_stats",
    "canonical_band",
    "dataset_gsd",
    "derive_groups",
    "fingerprint",
    "indices_of",
    "l4s_unit",
    "open_dataset",
    "open_datasets",
    "overlap_clusters",
    "qa_report",
    "split_dirs",
]
