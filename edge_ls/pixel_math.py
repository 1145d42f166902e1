"""Per-pixel math of the runtime, in numpy: the reference the native (C++/CUDA) kernels must match.

Every function here has a twin in ``native/include/edge_ls/pixel_math.h``; the pytest cross-check
compares them. Keep the formulas identical on both sides.
"""

from __future__ import annotations

import numpy as np

#: Offset of the Hann window samples: the window never reaches 0, so a pixel covered by a single
#: tile (raster borders) still has a weight and is never divided by zero.
HANN_OFFSET = 0.5


def to_unit_range(raw: np.ndarray, offset: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Map raw band values to [0, 1]: ``clip((raw - offset) * scale, 0, 1)`` per band (axis 0)."""
    out = raw.astype(np.float32, copy=False) - offset.reshape(-1, 1, 1).astype(np.float32)
    out *= scale.reshape(-1, 1, 1).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def normalize(unit: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Per-band standardization of [0, 1] values: ``(unit - mean) / std`` (axis 0 is the band)."""
    out = unit - mean.reshape(-1, 1, 1).astype(np.float32)
    out /= std.reshape(-1, 1, 1).astype(np.float32)
    return out


def sigmoid(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled logistic, computed without overflow for large |z|."""
    z = logits.astype(np.float32, copy=False) / np.float32(temperature)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def hann_window(size: int) -> np.ndarray:
    """1-D Hann window ``sin^2(pi (i + 0.5) / size)``: smooth, symmetric, strictly positive."""
    i = np.arange(size, dtype=np.float64)
    return (np.sin(np.pi * (i + HANN_OFFSET) / size) ** 2).astype(np.float32)


def blend_weights(size: int) -> np.ndarray:
    """2-D blend weights of a square tile: the outer product of two Hann windows."""
    w = hann_window(size)
    return np.outer(w, w)


def confidence(prob: np.ndarray, threshold: float) -> np.ndarray:
    """How far a probability sits from the decision threshold, scaled to [0, 1].

    0 at the threshold (a coin toss for this model), 1 at p = 0 or p = 1. The two sides are scaled
    separately so a threshold other than 0.5 still maps both certainties to 1. Meaningful as a
    confidence because the probabilities are temperature-calibrated (see ``ModelSpec.temperature``).
    """
    p = prob.astype(np.float32, copy=False)
    t = np.float32(threshold)
    above = (p - t) / (np.float32(1.0) - t)
    below = (t - p) / t
    return np.clip(np.where(p >= t, above, below), 0.0, 1.0).astype(np.float32)
