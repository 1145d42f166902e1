"""CAS Landslide layout: sub-datasets, the inverted label folder, grouping by region."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_ls.training.datasets import CASLandslide, open_dataset
from tests.training import fakes


def test_cas_subdatasets_ignore_inverted_label_folder(tmp_path: Path, real_data: Path) -> None:
    root = fakes.cas_style(
        tmp_path,
        real_data,
        {"Hokkaido": ["Hokkaido0017.tiff", "Hokkaido0058.tiff"], "Palu": ["Palu0117.tiff"]},
    )
    ds = open_dataset(root)
    assert isinstance(ds, CASLandslide) and len(ds) == 3
    assert ds.ids == ["cas/Hokkaido/Hokkaido0017", "cas/Hokkaido/Hokkaido0058", "cas/Palu/Palu0117"]
    s = ds[2]
    rgb = fakes.read_rgb(real_data / "cas_unlabeled" / "Palu0117.tiff")
    np.testing.assert_allclose(s.image, rgb.astype(np.float32) / 255.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(s.mask, fakes.brightness_mask(rgb))  # mask/, not the inverted label/
    # Two regions only: grouping falls back to overlap clusters inside each region.
    assert ds.groups == ["cas/Hokkaido/Hokkaido0017", "cas/Hokkaido/Hokkaido0058", "cas/Palu/Palu0117"]
    assert CASLandslide(root, group_by="region").groups == ["cas/Hokkaido", "cas/Hokkaido", "cas/Palu"]


def test_cas_three_regions_group_by_region(tmp_path: Path, real_data: Path) -> None:
    root = fakes.cas_style(
        tmp_path,
        real_data,
        {
            "Haiti": ["Haiti146.tiff", "Haiti398.tiff"],
            "Lombok": ["Lombok043.tiff"],
            "Palu": ["Palu0117.tiff"],
        },
    )
    assert open_dataset(root).groups == ["cas/Haiti", "cas/Haiti", "cas/Lombok", "cas/Palu"]
    single = CASLandslide(root / "Haiti")  # one sub-dataset folder given directly
    assert len(single) == 2 and single.ids[0] == "Haiti/Haiti/Haiti146"
