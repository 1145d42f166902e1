import numpy as np

from edge_ls import pixel_math


def test_hann_window_is_positive_symmetric_and_peaks_in_the_middle() -> None:
    w = pixel_math.hann_window(64)
    assert (w > 0).all()
    np.testing.assert_allclose(w, w[::-1], atol=1e-7)
    assert w[31] > 0.99 and w[0] < 0.01


def test_sigmoid_is_stable_and_temperature_flattens() -> None:
    z = np.array([-1000.0, -2.0, 0.0, 2.0, 1000.0], dtype=np.float32)
    p = pixel_math.sigmoid(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p, [0.0, 0.1192029, 0.5, 0.8807971, 1.0], atol=1e-6)
    assert pixel_math.sigmoid(z, temperature=2.0)[3] < p[3]


def test_confidence_is_zero_at_threshold_and_one_at_certainty() -> None:
    p = np.array([0.0, 0.15, 0.3, 0.65, 1.0], dtype=np.float32)
    c = pixel_math.confidence(p, threshold=0.3)
    np.testing.assert_allclose(c, [1.0, 0.5, 0.0, 0.5, 1.0], atol=1e-6)


def test_to_unit_range_clips_and_normalize_standardizes() -> None:
    raw = np.array([[[0, 100, 300]], [[50, 60, 70]]], dtype=np.uint16)
    unit = pixel_math.to_unit_range(raw, offset=np.array([0.0, 50.0]), scale=np.array([1 / 200, 1 / 20]))
    np.testing.assert_allclose(unit, [[[0.0, 0.5, 1.0]], [[0.0, 0.5, 1.0]]])
    z = pixel_math.normalize(unit, mean=np.array([0.5, 0.5]), std=np.array([0.5, 0.25]))
    np.testing.assert_allclose(z[1, 0], [-2.0, 0.0, 2.0])
