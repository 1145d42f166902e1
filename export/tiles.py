"""Labelled tiles for calibration and accuracy: moved to :mod:`edge_ls.io.labelled` (runtime layer).

The runtime evaluator reads them too, so they sit below export; these names stay importable here.
"""

from edge_ls.io.labelled import (
    IMAGE_SUFFIXES,
    RGB,
    LabelledTiles,
    image_paths,
    iter_batches,
    load_labelled,
    load_tiles,
    preprocess,
    read_mask,
    read_rgb,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "RGB",
    "LabelledTiles",
    "image_paths",
    "iter_batches",
    "load_labelled",
    "load_tiles",
    "preprocess",
    "read_mask",
    "read_rgb",
]
