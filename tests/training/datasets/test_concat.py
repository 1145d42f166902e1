"""Several datasets as one: prefixes kept, name clashes refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_ls.errors import ConfigError
from edge_ls.training.datasets import ConcatDataset, FolderPairs, open_datasets
from tests.training import fakes


def test_concat_keeps_prefixes_and_refuses_clashes(real_data: Path, tmp_path: Path) -> None:
    both = open_datasets([real_data / "cas_hokkaido", real_data / "bijie"])
    assert isinstance(both, ConcatDataset) and len(both) == 72
    assert both.ids[0] == "cas_hokkaido/10018" and both.ids[36] == "bijie/10009"
    assert both[36].id == "bijie/10009" and both[36].group.startswith("bijie/")
    assert all(g.split("/")[0] in ("cas_hokkaido", "bijie") for g in both.groups)
    copy = fakes.folder_pairs(tmp_path / "x", real_data, "bijie", n=2)
    with pytest.raises(ConfigError, match="same name"):
        ConcatDataset([FolderPairs(real_data / "bijie"), FolderPairs(copy)])
