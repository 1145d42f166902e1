"""Training augmentation as in the seed, applied identically to image and mask (numpy + OpenCV).

Steps, in order: resize to ``size``; multi-scale (random zoom, then centre-crop or reflect-pad back to
``size``); one of the 7 non-identity elements of the dihedral group (rotations by 90/180/270 degrees,
horizontal/vertical flips and the two transposes) or the identity; grayscale (RGB only, luminance
copied to the three channels); illumination (brightness, contrast, gamma), image only. Geometric
steps use the same transform on both arrays; the mask is resampled nearest-neighbour so it stays 0/1.
Everything random comes from the caller's ``numpy.random.Generator``: same generator state, same
output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The 8 elements of the dihedral group of the square, as (quarter turns, then transpose).
#: Index 0 is the identity; 1..7 are the seed's "7 rotations" (90/180/270 and the four reflections).
DIHEDRAL: tuple[tuple[int, bool], ...] = tuple((k, t) for t in (False, True) for k in range(4))


def dihedral(a: np.ndarray, element: int) -> np.ndarray:
    """Element ``element`` (0..7) of the dihedral group applied to the first two axes of ``a``."""
    k, transpose = DIHEDRAL[element]
    out = np.rot90(a, k, axes=(0, 1))
    if transpose:
        out = np.swapaxes(out, 0, 1)
    return out


def resize(image: np.ndarray, mask: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """H x W x C image (bilinear, area when shrinking) and H x W mask (nearest) to ``height x width``."""
    import cv2

    if image.shape[:2] == (height, width):
        return image, mask
    shrink = height < image.shape[0] and width < image.shape[1]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    img = _per_channel(image, lambda c: cv2.resize(c, (width, height), interpolation=interp))
    m = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)
    return img, m


def _per_channel(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a 2-D OpenCV function to an H x W x C array (OpenCV takes at most 4 channels at once)."""
    if image.shape[2] <= 4:
        out = fn(np.ascontiguousarray(image))
        return out[..., None] if out.ndim == 2 else out
    return np.stack([fn(np.ascontiguousarray(image[..., c])) for c in range(image.shape[2])], axis=-1)


def crop_or_pad(
    image: np.ndarray, mask: np.ndarray, height: int, width: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut or reflect-pad to ``height x width``: a random window when ``rng`` is given, else centred."""
    h, w = mask.shape
    ph, pw = max(0, height - h), max(0, width - w)
    if ph or pw:
        pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
        image = np.pad(image, (*pad, (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
        mask = np.pad(mask, pad, mode="reflect" if min(h, w) > 1 else "edge")
        h, w = mask.shape
    if rng is None:
        y, x = (h - height) // 2, (w - width) // 2
    else:
        y, x = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
    return image[y : y + height, x : x + width], mask[y : y + height, x : x + width]


@dataclass
class Augment:
    """``(image, mask, rng) -> (image, mask)``; ``size`` None keeps the input size.

    Images are H x W x C (as :class:`~edge_ls.training.datasets.Sample` holds them); C x H x W is
    accepted too (``channels_first``, or inferred from the mask's shape) and returned as given.
    ``p_*`` are the probabilities of each step; ``scale``, ``brightness``, ``contrast``, ``gamma`` the
    ranges drawn from.
    """

    size: int | None = None
    p_scale: float = 0.5
    scale: tuple[float, float] = (0.75, 1.33)
    p_dihedral: float = 0.875  # 7/8: each of the 8 orientations equally likely
    p_gray: float = 0.1
    p_light: float = 0.8
    brightness: float = 0.1  # added, in [0, 1] units
    contrast: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.8, 1.25)
    channels_first: bool | None = None

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        chw = self._channels_first(image, mask)
        img = np.moveaxis(image, 0, -1) if chw else image
        img = img[..., None] if img.ndim == 2 else img
        img = img.astype(np.float32, copy=False)
        m = mask
        if self.size is not None:
            img, m = resize(img, m, self.size, self.size)
        if self.p_scale and rng.random() < self.p_scale:
            img, m = self._rescale(img, m, float(rng.uniform(*self.scale)), rng)
        if rng.random() < self.p_dihedral:
            element = int(rng.integers(1, 8))
            img, m = dihedral(img, element), dihedral(m, element)
        if img.shape[2] == 3 and self.p_gray and rng.random() < self.p_gray:
            img = to_gray3(img)
        if self.p_light and rng.random() < self.p_light:
            img = self._light(img, rng)
        img = np.ascontiguousarray(np.moveaxis(img, -1, 0) if chw else img, dtype=np.float32)
        return img, np.ascontiguousarray(m)

    def _channels_first(self, image: np.ndarray, mask: np.ndarray) -> bool:
        if self.channels_first is not None:
            return self.channels_first
        if image.ndim == 2:
            return False
        hwc, chw = image.shape[:2] == mask.shape, image.shape[1:] == mask.shape
        if hwc == chw:
            raise ValueError(
                f"cannot tell channels from the shapes image {image.shape}, mask {mask.shape}: "
                "set Augment(channels_first=...)"
            )
        return chw

    @staticmethod
    def _rescale(
        img: np.ndarray, m: np.ndarray, factor: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        h, w = m.shape
        nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
        zi, zm = resize(img, m, nh, nw)
        return crop_or_pad(zi, zm, h, w, rng)

    def _light(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mean = img.mean(axis=(0, 1), keepdims=True)
        c = float(rng.uniform(*self.contrast))
        b = float(rng.uniform(-self.brightness, self.brightness))
        g = float(rng.uniform(*self.gamma))
        out = np.clip((img - mean) * c + mean + b, 0.0, 1.0)
        return np.power(out, g, dtype=np.float32)


def to_gray3(image: np.ndarray) -> np.ndarray:
    """RGB (H x W x 3, [0, 1]) to its Rec. 601 luminance copied into three channels."""
    gray = image @ np.asarray([0.299, 0.587, 0.114], np.float32)
    return np.repeat(gray[..., None], 3, axis=-1).astype(np.float32)


@dataclass
class Photometric:
    """What a new sensor, season or processing chain changes, image only (H x W x C in [0, 1]).

    Per-band gains (white balance, a different sensor's response), a hue turn in the chroma plane,
    Gaussian blur (a coarser optical system, resampling), additive noise, and rarely a permuted band
    order (false-colour composites). Steps are independent, each with its probability.
    """

    p_gain: float = 0.5
    gain: float = 0.15  # each band's gain drawn from [1 - gain, 1 + gain]
    p_hue: float = 0.3
    hue_deg: float = 20.0
    p_blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.5)
    p_noise: float = 0.3
    noise_sigma: tuple[float, float] = (0.005, 0.03)
    p_permute: float = 0.05

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = img.astype(np.float32, copy=True)
        c = out.shape[2]
        if rng.random() < self.p_gain:
            out *= rng.uniform(1 - self.gain, 1 + self.gain, size=c).astype(np.float32)
        if c == 3 and rng.random() < self.p_hue:
            out = hue_turn(out, float(rng.uniform(-self.hue_deg, self.hue_deg)))
        if rng.random() < self.p_blur:
            import cv2

            sigma = float(rng.uniform(*self.blur_sigma))
            out = _per_channel(out, lambda a: cv2.GaussianBlur(a, (0, 0), sigma))
        if rng.random() < self.p_noise:
            sigma = float(rng.uniform(*self.noise_sigma))
            out = out + rng.normal(0.0, sigma, size=out.shape).astype(np.float32)
        if c > 1 and rng.random() < self.p_permute:
            out = out[..., rng.permutation(c)]
        return np.clip(out, 0.0, 1.0)


def hue_turn(image: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the chroma of an RGB image by ``degrees`` in YIQ space (luminance kept)."""
    to_yiq = np.asarray([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], np.float32)
    a = np.deg2rad(degrees)
    rot = np.asarray([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]], np.float32)
    m = np.linalg.inv(to_yiq) @ rot @ to_yiq
    return (image @ m.T.astype(np.float32)).astype(np.float32)
