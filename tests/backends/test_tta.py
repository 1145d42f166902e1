"""The uncertainty layer: D4 test-time augmentation, std of the calibrated probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.backends.tta import D4, TTARunner
from edge_ls.deployment import LoadedModel, deploy
from edge_ls.io.labelled import load_tiles
from edge_ls.pipeline import detect

REPO = Path(__file__).resolve().parents[2]


def test_every_d4_inverse_undoes_its_transform() -> None:
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    seen = set()
    for forward, inverse in D4:
        y = forward(x)
        seen.add(y.tobytes())
        np.testing.assert_array_equal(inverse(y[:, 0]), x[:, 0])
    assert len(seen) == 8  # eight distinct transforms


def test_probability_is_the_plain_output_and_std_measures_disagreement(real_data: Path) -> None:
    lite = LoadedModel.load("edge-lite")
    x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=2)
    with OnnxRuntimeRunner(lite.path) as plain, TTARunner(OnnxRuntimeRunner(lite.path), lite.spec, 8) as tta:
        ref = lite.spec.probabilities(plain.infer(x)[:, 0])
        prob, std = tta.probabilities(x)
        views = [
            inverse(lite.spec.probabilities(plain.infer(np.ascontiguousarray(forward(x)))[:, 0]))
            for forward, inverse in D4
        ]
    np.testing.assert_allclose(prob, ref, atol=1e-6)
    np.testing.assert_allclose(std, np.std(views, axis=0), atol=1e-6)
    assert std.max() > 0.01  # a real model is not orientation-invariant
    with pytest.raises(ValueError, match=r"2\.\.8"):
        TTARunner(OnnxRuntimeRunner(lite.path), lite.spec, 9)


def test_a_profile_with_uncertainty_writes_uncertainty_tif_encoded_like_the_probability(
    tmp_path: Path, geotiffs: Path
) -> None:
    text = (REPO / "profiles" / "edge-nano.toml").read_text()
    profile = tmp_path / "u.toml"
    profile.write_text(text.replace("uncertainty = false", "uncertainty = true\ntta = 4"))
    report = detect(geotiffs / "rasterio" / "RGB.byte.tif", deploy(profile, tile_size=256), tmp_path / "o")
    assert "uncertainty.tif" in report["outputs"] and report["runner"]["uncertainty"]["tta"] == 4
    with (
        rasterio.open(tmp_path / "o" / "uncertainty.tif") as u,
        rasterio.open(tmp_path / "o" / "probability.tif") as p,
    ):
        assert (u.dtypes, u.nodata, u.scales) == (p.dtypes, p.nodata, p.scales)
        values, prob = u.read(1), p.read(1)
        assert ((values == 255) == (prob == 255)).all()  # nodata in the same places
        assert values[values != 255].max() <= 50  # a std of values in [0, 1] is at most 0.5
    plain = detect(geotiffs / "rasterio" / "RGB.byte.tif", deploy("edge-nano", tile_size=256), tmp_path / "p")
    assert "uncertainty.tif" not in plain["outputs"]
    with rasterio.open(tmp_path / "p" / "probability.tif") as a:
        np.testing.assert_array_equal(a.read(1), prob)  # uncertainty changes no other output


def test_averaging_runner_is_the_mean_of_the_d4_views_and_one_view_is_the_model(real_data: Path) -> None:
    from edge_ls.backends.tta import AveragingRunner, mean_probability

    lite = LoadedModel.load("edge-lite")
    x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=2)
    with (
        OnnxRuntimeRunner(lite.path) as plain,
        AveragingRunner(OnnxRuntimeRunner(lite.path), lite.spec, 8) as avg,
    ):
        views = [
            inverse(lite.spec.probabilities(plain.infer(np.ascontiguousarray(forward(x)))[:, 0]))
            for forward, inverse in D4
        ]
        got = avg.infer(x)[:, 0]
        one = mean_probability(plain, lite.spec, x, 1)
        ref = lite.spec.probabilities(plain.infer(x)[:, 0])
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-6)
    assert np.abs(got - views[0]).max() > 0.01  # averaging changes a real model's output
    np.testing.assert_array_equal(one, ref)
    with pytest.raises(ValueError, match="nothing to average"):
        AveragingRunner(OnnxRuntimeRunner(lite.path), lite.spec, 1)


def test_scales_average_the_model_on_the_resized_tile_mapped_back(real_data: Path) -> None:
    """Scale 0.5: the tile area-averaged to half its side, the probability enlarged back; the result is
    the equal-weight mean of each scale's own view average, and scale 1 alone changes nothing."""
    import cv2

    from edge_ls.backends.tta import AveragingRunner, mean_probability, scaled_size

    lite = LoadedModel.load("edge-lite")
    x = load_tiles(real_data / "bijie", lite.spec, size=256, limit=2)
    assert scaled_size(256, 256, 0.5) == (128, 128) and scaled_size(128, 100, 0.75) == (96, 64)
    with OnnxRuntimeRunner(lite.path) as plain:
        half = np.stack([[cv2.resize(p, (128, 128), interpolation=cv2.INTER_AREA) for p in t] for t in x])
        p_half = lite.spec.probabilities(plain.infer(np.ascontiguousarray(half, np.float32))[:, 0])
        back = np.stack([cv2.resize(p, (256, 256), interpolation=cv2.INTER_LINEAR) for p in p_half])
        full = lite.spec.probabilities(plain.infer(x)[:, 0])
        got = mean_probability(plain, lite.spec, x, 1, (1.0, 0.5))
        np.testing.assert_array_equal(mean_probability(plain, lite.spec, x, 1, (1.0,)), full)
        with AveragingRunner(OnnxRuntimeRunner(lite.path), lite.spec, 1, (1.0, 0.5)) as avg:
            np.testing.assert_allclose(avg.infer(x)[:, 0], got, atol=1e-6)
            assert avg.report()["views"]["scales"] == [1.0, 0.5]
    np.testing.assert_allclose(got, (full + back) / 2, atol=1e-5)
    assert np.abs(got - full).max() > 0.01  # the second scale changes a real model's output


def test_views_come_from_the_profile_and_cannot_be_combined_with_uncertainty(tmp_path: Path) -> None:
    from edge_ls.backends.select import make_runner
    from edge_ls.backends.tta import AveragingRunner
    from edge_ls.errors import ConfigError

    d = deploy(model="edge-lite", views=4)
    runner = make_runner(d)
    assert isinstance(runner, AveragingRunner) and runner.views == 4
    assert "model averaged over 4 D4 views" in d.describe()
    text = (REPO / "profiles" / "edge-nano.toml").read_text()
    profile = tmp_path / "u.toml"
    profile.write_text(
        text.replace("uncertainty = false", "uncertainty = true").replace("[models]", "views = 8\n\n[models]")
    )
    with pytest.raises(ConfigError, match=r"views .* and the uncertainty layer cannot be combined"):
        deploy(profile)


def test_usable_scales_keep_the_pixels_inside_the_trained_gsd_range() -> None:
    from edge_ls.backends.tta import usable_scales

    assert usable_scales((1.0, 0.5), 3.0, (0.5, 12.0)) == (1.0, 0.5)  # 6 m: inside
    assert usable_scales((1.0, 0.5), 10.0, (0.5, 12.0)) == (1.0,)  # 20 m: outside
    assert usable_scales((1.0, 2.0), 0.6, (0.5, 12.0)) == (1.0,)  # 0.3 m: outside
    assert usable_scales((0.5,), 10.0, (0.5, 12.0)) == (1.0,)  # nothing usable: the model as it is
    assert usable_scales((1.0, 0.5), None, (0.5, 12.0)) == (1.0, 0.5)  # unknown GSD: as configured
    assert usable_scales((1.0, 0.5), 10.0, None) == (1.0, 0.5)
