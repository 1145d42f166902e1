"""Band statistics of a training split (the mean/std a model's metadata carries)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge_ls.errors import InputError
from edge_ls.training.datasets.base import SegmentationDataset


def band_stats(
    dataset: SegmentationDataset, indices: Sequence[int] | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-band mean and std over every valid pixel of ``indices`` (the training split), streamed.

    Chan's pairwise update in float64, one sample at a time: nothing is stacked. Bad pairs are
    skipped (counted in ``dataset.skipped``). std has a floor of 1e-6 (a constant band).
    """
    count = 0
    mean = np.zeros(len(dataset.bands), np.float64)
    m2 = np.zeros(len(dataset.bands), np.float64)
    for i in range(len(dataset)) if indices is None else indices:
        sample = dataset.try_get(int(i))
        if sample is None:
            continue
        px = sample.image.reshape(-1, sample.image.shape[-1]).astype(np.float64)
        if sample.valid is not None:
            px = px[sample.valid.ravel()]
        n_b = px.shape[0]
        if n_b == 0:
            continue
        mean_b = px.mean(axis=0)
        m2_b = ((px - mean_b) ** 2).sum(axis=0)
        delta = mean_b - mean
        total = count + n_b
        mean = mean + delta * (n_b / total)
        m2 = m2 + m2_b + delta**2 * (count * n_b / total)
        count = total
    if count == 0:
        raise InputError(f"{dataset.name}: no readable pixels to compute band statistics from")
    std = np.maximum(np.sqrt(m2 / count), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)
