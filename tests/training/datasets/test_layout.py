"""Layout detection refuses what it does not know."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ls.errors import InputError
from edge_ls.training.datasets import open_dataset


def test_open_dataset_refuses_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(InputError, match="not a dataset layout"):
        open_dataset(tmp_path)
