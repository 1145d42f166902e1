"""Shared fixtures of the dataset loader tests (real files from ``shared/data/real``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ls.training.datasets import FolderPairs, open_dataset


@pytest.fixture(scope="module")
def hokkaido(real_data: Path) -> FolderPairs:
    ds = open_dataset(real_data / "cas_hokkaido")
    assert isinstance(ds, FolderPairs)
    return ds
