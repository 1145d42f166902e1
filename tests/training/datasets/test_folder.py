"""``images/`` + ``masks/`` pairs on the real PNGs: runtime-identical reading."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge_ls.training.datasets import FolderPairs, open_dataset


def test_folder_pairs_reads_real_pngs_as_rgb_unit_range(hokkaido: FolderPairs, real_data: Path) -> None:
    assert len(hokkaido) == 36 and hokkaido.bands == ("red", "green", "blue")
    assert hokkaido.input_range == "8bit"
    s = hokkaido[0]
    assert s.id == "cas_hokkaido/10018"
    assert s.image.shape == (512, 512, 3) and s.image.dtype == np.float32
    # Independent read: OpenCV gives BGR; the loader must give RGB / 255 exactly.
    bgr = cv2.imread(str(real_data / "cas_hokkaido" / "images" / "10018.png"))
    # (x * float32(1/255) as the runtime computes it: within one float32 ulp of x / 255)
    np.testing.assert_allclose(s.image, bgr[..., ::-1].astype(np.float32) / 255.0, rtol=0, atol=1e-7)
    ref = cv2.imread(str(real_data / "cas_hokkaido" / "masks" / "10018.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(s.mask, ref)
    assert s.mask.dtype == np.uint8 and set(np.unique(s.mask)) <= {0, 1} and s.mask.any()
    assert s.valid is None


def test_training_input_equals_what_the_runtime_feeds_the_model(real_data: Path, geotiffs: Path) -> None:
    """normalize(sample.image) with a model's mean/std is exactly RasterSource.read for that model."""
    from rasterio.windows import Window

    from edge_ls.artifact import ModelSpec
    from edge_ls.io.source import RasterSource
    from edge_ls.pixel_math import normalize

    spec = ModelSpec(
        name="m",
        tier="edge-lite",
        bands=("red", "green", "blue"),
        mean=(0.35, 0.41, 0.37),
        std=(0.18, 0.17, 0.16),
        input_range="8bit",
        gsd_m=3.0,
        tile_size=512,
        overlap=0.2,
        activation="logits",
        threshold=0.5,
    )
    ds = open_dataset(real_data / "bijie")
    s = ds[4]
    with RasterSource(ds.records[4].image, spec) as src, src.open_handle() as h:
        x, valid = src.read(h, Window(0, 0, src.width, src.height))
    assert valid.all()
    ours = normalize(np.moveaxis(s.image, -1, 0), np.asarray(spec.mean), np.asarray(spec.std))
    np.testing.assert_allclose(ours, x, rtol=0, atol=1e-6)
