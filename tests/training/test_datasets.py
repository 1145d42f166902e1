"""Dataset loaders on real files: layouts, band choice, runtime-identical scaling, groups, stats, QA."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import rasterio

from edge_ls.errors import ConfigError, InputError
from edge_ls.training.datasets import (
    L4S_DIVISOR,
    CASLandslide,
    ConcatDataset,
    FolderPairs,
    GDCLDPairs,
    Landslide4Sense,
    band_stats,
    fingerprint,
    open_dataset,
    open_datasets,
    qa_report,
)
from tests.training import fakes


@pytest.fixture(scope="module")
def hokkaido(real_data: Path) -> FolderPairs:
    ds = open_dataset(real_data / "cas_hokkaido")
    assert isinstance(ds, FolderPairs)
    return ds


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


def test_hokkaido_groups_are_real_stride_256_overlaps(hokkaido: FolderPairs) -> None:
    groups = hokkaido.groups
    clusters: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        clusters.setdefault(g, []).append(i)
    multi = [c for c in clusters.values() if len(c) > 1]
    assert len(clusters) == 29 and len(multi) == 6  # 13 tiles in 6 overlap clusters

    # Check each linked pair independently: some 256-px half of one equals a half of the other.
    def quads(im: np.ndarray) -> list[np.ndarray]:
        return [im[y : y + 256, x : x + 256] for y in (0, 256) for x in (0, 256)]

    for members in multi:
        images = [hokkaido[i].image for i in members]
        for k, a in enumerate(images):
            others = images[:k] + images[k + 1 :]
            assert any(np.array_equal(p, q) for b in others for p in quads(a) for q in quads(b))
    # Tiles never linked share no block.
    singles = [c[0] for c in clusters.values() if len(c) == 1][:6]
    blocks = [set(fingerprint(hokkaido[i].image).blocks) for i in singles]
    assert all(not (blocks[i] & blocks[j]) for i in range(len(blocks)) for j in range(i))


def test_bijie_non_square_tiles_each_their_own_group(real_data: Path) -> None:
    ds = open_dataset(real_data / "bijie")
    assert len(ds) == 36 and len(set(ds.groups)) == 36
    s = ds[0]
    assert s.image.shape == (512, 547, 3) and s.mask.shape == (512, 547)


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


def test_landslide4sense_rgb_and_nir_bands_scaled_back_to_reflectance(
    tmp_path: Path, real_data: Path
) -> None:
    root = fakes.l4s_style(tmp_path, real_data, n=3)
    ds = open_dataset(root)
    assert isinstance(ds, Landslide4Sense) and len(ds) == 3 and ds.input_range == "reflectance"
    with h5py.File(root / "TrainData" / "img" / "image_31.h5") as f:
        raw = f["img"][()]
    s = ds[0]
    assert s.id == "l4s/image_31" and s.image.shape == (128, 128, 3)
    for c, band in enumerate((3, 2, 1)):  # RGB = B4, B3, B2
        want = np.clip(raw[..., band] * L4S_DIVISOR[band] / 10000.0, 0, 1).astype(np.float32)
        np.testing.assert_allclose(s.image[..., c], want, rtol=1e-6)
    # Raw red DN = value x 445.17: real Sentinel-2 reflectance of a few percent, not > 1.
    assert 0.01 < float(s.image[..., 0].mean()) < 0.3
    np.testing.assert_array_equal(s.mask, fakes.ndvi_mask(raw))
    nir = Landslide4Sense(root, bands=("B8", "slope", "dem"))
    assert nir.bands == ("nir", "slope", "dem")
    x = nir[0].image
    np.testing.assert_allclose(x[..., 0], np.clip(raw[..., 7] * L4S_DIVISOR[7] / 1e4, 0, 1), rtol=1e-6)
    assert float((raw[..., 13] * L4S_DIVISOR[13]).max()) > 100  # DEM back in metres
    with pytest.raises(ConfigError, match="no band"):
        Landslide4Sense(root, bands=("red", "nir08"))


def test_gdcld_geotiff_pairs_keep_nodata_as_invalid(tmp_path: Path, geotiffs: Path) -> None:
    src = geotiffs / "rasterio" / "RGB.byte.tif"  # nodata 0 collar
    root = fakes.gdcld_style(tmp_path, src, size=256, events=("ev1",))
    ds = open_dataset(root)
    assert isinstance(ds, GDCLDPairs) and len(ds) == 6
    s = ds[0]
    with rasterio.open(src) as f:
        raw = np.moveaxis(f.read(window=((0, 256), (0, 256))), 0, -1)
    nodata = (raw == 0).any(axis=-1)  # the runtime: invalid where any selected band is nodata
    assert nodata.any() and s.valid is not None
    np.testing.assert_array_equal(s.valid, ~nodata)
    np.testing.assert_allclose(s.image[~nodata], raw[~nodata].astype(np.float32) / 255.0, atol=1e-7)
    assert (s.image[nodata] == 0).all()


def test_uint16_geotiff_uses_the_runtime_reflectance_rule(tmp_path: Path, geotiffs: Path) -> None:
    src = geotiffs / "rio-tiler" / "scene_band1.tif"  # Sentinel-2 DN, uint16, nodata 0
    (tmp_path / "g" / "images").mkdir(parents=True)
    shutil.copy(src, tmp_path / "g" / "images" / "scene.tif")
    with rasterio.open(src) as f:
        raw = f.read(1)
    fakes.write_tiff(tmp_path / "g" / "masks" / "scene.tif", (raw > np.median(raw)).astype(np.uint8))
    ds = open_dataset(tmp_path / "g", bands=("gray",))
    assert isinstance(ds, GDCLDPairs) and ds.input_range == "reflectance"
    s = ds[0]
    valid = raw != 0
    assert s.valid is None or np.array_equal(s.valid, valid)
    want = np.clip(raw / 10000.0, 0, 1).astype(np.float32)
    np.testing.assert_allclose(s.image[..., 0][valid], want[valid], rtol=1e-6)
    assert 0.1 < float(s.image[..., 0][valid].mean()) < 0.8
    stretched = GDCLDPairs(tmp_path / "g", bands=("gray",), input_range="8bit")[0].image
    lo, hi = np.percentile(raw[valid], (2, 98))  # the runtime's 2-98 % stretch of non-8-bit data
    np.testing.assert_allclose(
        stretched[..., 0][valid], np.clip((raw[valid] - lo) / (hi - lo), 0, 1), atol=1e-5
    )


def _planted(tmp_path: Path, real_data: Path) -> Path:
    """Six real hokkaido pairs plus one planted problem of each kind."""
    root = fakes.folder_pairs(tmp_path, real_data, n=6)
    images, masks = root / "images", root / "masks"
    ids = sorted(p.stem for p in images.iterdir())
    m = cv2.imread(str(masks / f"{ids[0]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(masks / f"{ids[0]}.png"), m * 255)  # 0/255 mask: read as 0/1, reported
    m = cv2.imread(str(masks / f"{ids[1]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(masks / f"{ids[1]}.png"), m[:500, :500])  # size mismatch
    data = (images / f"{ids[2]}.png").read_bytes()
    (images / f"{ids[2]}.png").write_bytes(data[: len(data) // 3])  # truncated PNG: corrupt
    shutil.copy(images / f"{ids[3]}.png", images / "dup.png")  # duplicate tile
    shutil.copy(masks / f"{ids[3]}.png", masks / "dup.png")
    m = cv2.imread(str(masks / f"{ids[4]}.png"), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(masks / f"{ids[4]}.png"), m * 3)  # values 0/3: no binary meaning
    shutil.copy(images / f"{ids[5]}.png", images / "nomask.png")  # image without a mask
    shutil.copy(images / f"{ids[5]}.png", images / "empty.png")
    cv2.imwrite(str(masks / "empty.png"), np.zeros((512, 512), np.uint8))  # empty mask
    shutil.copy(masks / f"{ids[5]}.png", masks / "orphan.png")  # a mask without its image
    return root


def test_qa_finds_planted_problems_with_exact_counts(tmp_path: Path, real_data: Path) -> None:
    ds = open_dataset(_planted(tmp_path, real_data))
    assert len(ds) == 9
    report = qa_report(ds)
    assert report["skipped"] == {"unreadable": 1, "size_mismatch": 1, "mask_values": 1, "missing_mask": 1}
    assert report["usable"] == 5
    assert report["mask_0_255"] == 1 and report["empty_masks"] == 1 and report["orphan_masks"] == 1
    # dup.png duplicates its source; empty.png duplicates 10089 (same image, other mask); nomask is
    # unreadable as a pair, so it does not count.
    assert report["duplicates"] == 2
    assert sorted(map(sorted, report["duplicate_sets"])) == [
        ["cas_hokkaido/10080", "cas_hokkaido/dup"],
        ["cas_hokkaido/10089", "cas_hokkaido/empty"],
    ]
    assert report["examples"]["unreadable"] == ["cas_hokkaido/10026"]
    assert report["examples"]["size_mismatch"] == ["cas_hokkaido/10025"]
    assert report["examples"]["mask_0_255"] == ["cas_hokkaido/10018"]
    # 10025 and 10026 overlap in the real data, but neither pair is readable here.
    assert report["overlapping_tiles"] == 0


def test_qa_counts_real_overlaps(hokkaido: FolderPairs) -> None:
    report = qa_report(hokkaido)
    assert report["usable"] == 36 and sum(report["skipped"].values()) == 0
    assert report["duplicates"] == 0 and report["empty_masks"] == 0
    assert report["overlapping_tiles"] == 13 and report["overlap_clusters"] == 6
    assert 0.10 < report["landslide_fraction"] < 0.13  # README: mean share 11.6 %


def test_iteration_skips_bad_pairs_with_a_count(tmp_path: Path, real_data: Path) -> None:
    ds = open_dataset(_planted(tmp_path, real_data))
    samples = list(ds)
    assert len(samples) == 5
    assert len(list(ds)) == 5  # a second pass (e.g. band statistics) does not count them again
    assert dict(ds.skipped) == {"unreadable": 1, "size_mismatch": 1, "mask_values": 1, "missing_mask": 1}
    s = next(x for x in samples if x.id.endswith("10018"))
    assert set(np.unique(s.mask)) == {0, 1}  # the 0/255 mask read as 0/1
    with pytest.raises(InputError, match="500x500"):
        ds[ds.ids.index("cas_hokkaido/10025")]


def test_band_stats_streams_to_the_stacked_answer(hokkaido: FolderPairs) -> None:
    idx = [0, 3, 7, 11]
    mean, std = band_stats(hokkaido, idx)
    stack = np.concatenate([hokkaido[i].image.reshape(-1, 3) for i in idx]).astype(np.float64)
    np.testing.assert_allclose(mean, stack.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(std, stack.std(axis=0), rtol=1e-9)
    other = band_stats(hokkaido, [1, 2])[0]
    assert not np.allclose(mean, other)  # only the given (training) indices count


def test_band_stats_ignore_invalid_pixels(tmp_path: Path, geotiffs: Path) -> None:
    ds = open_dataset(fakes.gdcld_style(tmp_path, geotiffs / "rasterio" / "RGB.byte.tif"))
    s = ds[0]
    mean, _ = band_stats(ds, [0])
    np.testing.assert_allclose(mean, s.image[s.valid].astype(np.float64).mean(axis=0), rtol=1e-9)


def test_concat_keeps_prefixes_and_refuses_clashes(real_data: Path, tmp_path: Path) -> None:
    both = open_datasets([real_data / "cas_hokkaido", real_data / "bijie"])
    assert isinstance(both, ConcatDataset) and len(both) == 72
    assert both.ids[0] == "cas_hokkaido/10018" and both.ids[36] == "bijie/10009"
    assert both[36].id == "bijie/10009" and both[36].group.startswith("bijie/")
    assert all(g.split("/")[0] in ("cas_hokkaido", "bijie") for g in both.groups)
    copy = fakes.folder_pairs(tmp_path / "x", real_data, "bijie", n=2)
    with pytest.raises(ConfigError, match="same name"):
        ConcatDataset([FolderPairs(real_data / "bijie"), FolderPairs(copy)])


def test_open_dataset_refuses_unknown_layouts(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "stuff").mkdir()
    with pytest.raises(InputError, match="not a dataset layout"):
        open_dataset(tmp_path)


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
