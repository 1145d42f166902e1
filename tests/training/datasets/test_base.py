"""The dataset interface: iteration skips bad pairs once, with a count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_ls.errors import InputError
from edge_ls.training.datasets import open_dataset
from tests.training import fakes


def test_iteration_skips_bad_pairs_with_a_count(tmp_path: Path, real_data: Path) -> None:
    ds = open_dataset(fakes.planted_problems(tmp_path, real_data))
    samples = list(ds)
    assert len(samples) == 5
    assert len(list(ds)) == 5  # a second pass (e.g. band statistics) does not count them again
    assert dict(ds.skipped) == {"unreadable": 1, "size_mismatch": 1, "mask_values": 1, "missing_mask": 1}
    s = next(x for x in samples if x.id.endswith("10018"))
    assert set(np.unique(s.mask)) == {0, 1}  # the 0/255 mask read as 0/1
    with pytest.raises(InputError, match="500x500"):
        ds[ds.ids.index("cas_hokkaido/10025")]
