"""Small dataset folders in the real formats, built from REAL files (imagery copied, masks derived).

In the manner of TorchGeo's ``tests/data/<name>/data.py``: each builder writes one layout into a
temporary folder. Images are real bytes from ``shared/data/real``; where the source has no labels,
the mask is derived from the image (a brightness or NDVI threshold), so it is a plausible 0/1 mask
aligned with real content. Nothing here is a stand-in for the code under test.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

#: Landslide4Sense channel indices of B4 (red) and B8 (NIR).
L4S_RED, L4S_NIR = 3, 7


def brightness_mask(rgb_hwc: np.ndarray) -> np.ndarray:
    """0/1 mask of the brighter-than-median pixels (bare soil/landslide scars are bright)."""
    lum = rgb_hwc.astype(np.float64).mean(axis=-1)
    return (lum > np.median(lum)).astype(np.uint8)


def ndvi_mask(img: np.ndarray) -> np.ndarray:
    """0/1 mask of low-NDVI pixels of a Landslide4Sense patch (vegetation loss)."""
    red, nir = img[..., L4S_RED].astype(np.float64), img[..., L4S_NIR].astype(np.float64)
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    return (ndvi < np.median(ndvi)).astype(np.uint8)


def write_png_mask(path: Path, mask: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


def write_tiff(path: Path, bands_hwc: np.ndarray, **profile: object) -> None:
    """Write an H x W x C (or H x W) array as a TIFF (profile extras: crs, transform, nodata...)."""
    a = bands_hwc if bands_hwc.ndim == 3 else bands_hwc[..., None]
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=a.shape[1],
        height=a.shape[0],
        count=a.shape[2],
        dtype=a.dtype,
        **profile,
    ) as ds:
        ds.write(np.moveaxis(a, -1, 0))
        if a.shape[2] == 3:
            from rasterio.enums import ColorInterp

            ds.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)


def read_rgb(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return np.moveaxis(ds.read([1, 2, 3]), 0, -1)


def folder_pairs(root: Path, real: Path, source: str = "cas_hokkaido", n: int = 6) -> Path:
    """``root/<source>/images`` + ``masks``: the first ``n`` real pairs of ``real/<source>``."""
    out = root / source
    (out / "images").mkdir(parents=True)
    (out / "masks").mkdir()
    for img in sorted((real / source / "images").iterdir())[:n]:
        shutil.copy(img, out / "images" / img.name)
        shutil.copy(real / source / "masks" / f"{img.stem}.png", out / "masks" / f"{img.stem}.png")
    return out


def cas_style(root: Path, real: Path, regions: dict[str, list[str]]) -> Path:
    """``root/cas/<Region>/{img,mask,label}/``: real CAS tiles, derived 0/1 masks, inverted labels.

    ``regions`` maps a sub-dataset name to file names in ``real/cas_unlabeled``. ``label/`` holds the
    inverted colours the real dataset ships (landslide black): a loader must ignore it.
    """
    out = root / "cas"
    for region, names in regions.items():
        for name in names:
            src = real / "cas_unlabeled" / name
            stem = Path(name).stem
            (out / region / "img").mkdir(parents=True, exist_ok=True)
            shutil.copy(src, out / region / "img" / f"{stem}.tif")
            mask = brightness_mask(read_rgb(src))
            write_tiff(out / region / "mask" / f"{stem}.tif", mask)
            write_tiff(
                out / region / "label" / f"{stem}.tif", np.repeat(((1 - mask) * 255)[..., None], 3, -1)
            )
    return out


def l4s_style(root: Path, real: Path, n: int = 3) -> Path:
    """``root/l4s/TrainData/{img,mask}/``: real Landslide4Sense patches, NDVI-derived masks."""
    import h5py

    out = root / "l4s" / "TrainData"
    (out / "img").mkdir(parents=True)
    (out / "mask").mkdir()
    for src in sorted((real / "landslide4sense_images").glob("*.h5"))[:n]:
        num = src.stem.split("_")[-1]
        with h5py.File(src, "r") as f:
            img = f["img"][()]
        with h5py.File(out / "img" / f"image_{num}.h5", "w") as f:
            f.create_dataset("img", data=img)
        with h5py.File(out / "mask" / f"mask_{num}.h5", "w") as f:
            f.create_dataset("mask", data=ndvi_mask(img))
    return root / "l4s"


def gdcld_style(root: Path, geotiff: Path, size: int = 256, events: tuple[str, ...] = ("ev1",)) -> Path:
    """``root/gdcld/<event>/{image,mask}/``: georeferenced windows of a real GeoTIFF + derived masks.

    Windows keep the source CRS, transform (of the window) and nodata; the mask is the brightness
    mask of the window.
    """
    out = root / "gdcld"
    with rasterio.open(geotiff) as src:
        profile = {"crs": src.crs, "nodata": src.nodata}
        k = 0
        for ev in events:
            for row in range(0, src.height - size + 1, size):
                for col in range(0, src.width - size + 1, size):
                    win = Window(col, row, size, size)
                    data = np.moveaxis(src.read([1, 2, 3], window=win), 0, -1)
                    name = f"tile_{k:03d}.tif"
                    transform = src.window_transform(win)
                    write_tiff(out / ev / "image" / name, data, transform=transform, **profile)
                    write_tiff(
                        out / ev / "mask" / name, brightness_mask(data), transform=transform, crs=src.crs
                    )
                    k += 1
    return out


def split_folders(root: Path, real: Path, per_split: int = 2) -> Path:
    """``root/l4s_rgb/{train,validation,test}/{images,masks}/``: real RGBA PNG pairs of l4s_rgb."""
    src, out = real / "l4s_rgb", root / "l4s_rgb"
    for split in ("train", "validation", "test"):
        images = sorted((src / split / "images").glob("*.png"))[:per_split]
        (out / split / "images").mkdir(parents=True)
        (out / split / "masks").mkdir()
        for img in images:
            shutil.copy(img, out / split / "images" / img.name)
            shutil.copy(src / split / "masks" / img.name, out / split / "masks" / img.name)
    return out


def planted_problems(tmp_path: Path, real_data: Path) -> Path:
    """Six real hokkaido pairs plus one planted problem of each kind."""
    root = folder_pairs(tmp_path, real_data, n=6)
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
