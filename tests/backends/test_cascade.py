"""The cascade runner: triage on every tile, the refiner on ROI tiles and their neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from edge_ls.backends.cascade import WINDOW_MARGIN, CascadeRunner, hot_windows, window_crops, windows
from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.deployment import LoadedModel, deploy
from edge_ls.io.labelled import load_tiles
from edge_ls.pipeline import detect
from edge_ls.tiling import plan_tiles


def _cascade(triage: str, refiner: str, roi: float) -> tuple[CascadeRunner, LoadedModel, LoadedModel]:
    t, r = LoadedModel.load(triage), LoadedModel.load(refiner)
    runner = CascadeRunner(OnnxRuntimeRunner(t.path), OnnxRuntimeRunner(r.path), triage_spec=t.spec,
                           refiner_spec=r.spec, roi_threshold=roi, batch_size=2)  # fmt: skip
    return runner, t, r


def test_roi_tiles_and_their_neighbours_are_refined_the_rest_keep_the_triage(real_data: Path) -> None:
    """Real models and tiles: edge-lite as triage (its tile maxima vary), edge-nano as refiner."""
    lite = LoadedModel.load("edge-lite")
    lite_x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=12)  # a 3 x 4 grid of tiles
    plan = plan_tiles(4 * 128, 3 * 128, 128, 0.0)
    with OnnxRuntimeRunner(lite.path) as r:
        triaged = lite.spec.probabilities(r.infer(lite_x)[:, 0])
    maxima = triaged.reshape(12, -1).max(axis=1)
    roi = float(np.sort(maxima)[9])  # three tiles reach it
    hits = {i for i in range(12) if maxima[i] >= roi}
    expected = {n for i in hits for n in range(12) if abs(n // 4 - i // 4) <= 1 and abs(n % 4 - i % 4) <= 1}
    assert 0 < len(expected) < 12

    runner, _, nano = _cascade("edge-lite", "edge-nano", roi)
    tiles = load_tiles(real_data / "bijie", nano.spec, size=128, limit=12)  # read as the refiner reads
    with runner, OnnxRuntimeRunner(nano.path) as ref:
        runner.bind(plan)
        got = {}
        for i in range(0, 12, 2):  # batches of two, in raster order as the stream sends them
            for tile, prob, _ in runner.infer_tiles(tiles[i : i + 2], list(plan)[i : i + 2]):
                got[tile.index] = prob
        for tile, prob, _ in runner.flush():
            got[tile.index] = prob
        refined = nano.spec.probabilities(ref.infer(tiles)[:, 0])
    assert sorted(got) == list(range(12))
    for i in range(12):
        want = refined[i] if i in expected else triaged[i]
        np.testing.assert_allclose(got[i], want, atol=1e-4, err_msg=f"tile {i}")
    report = runner.report()["cascade"]
    assert report["tiles_triaged"] == 12 and report["tiles_refined"] == len(expected)


def test_tiles_are_held_only_until_their_later_neighbours_are_triaged(real_data: Path) -> None:
    runner, _, lite = _cascade("edge-nano", "edge-lite", 0.3)
    tiles = load_tiles(real_data / "bijie", lite.spec, size=128, limit=6)
    plan = plan_tiles(3 * 128, 2 * 128, 128, 0.0)
    with runner:
        runner.bind(plan)
        runner.roi_threshold = 1.01  # nothing reaches it: every tile waits for its neighbours only
        first = runner.infer_tiles(tiles[:3], list(plan)[:3])
        assert first == []  # row 0 waits for row 1
        rest = runner.infer_tiles(tiles[3:], list(plan)[3:])
        assert sorted(t.index for t, _, _ in rest) == list(range(6)) and runner.tiles_refined == 0


def test_a_cascade_with_everything_refined_equals_the_refiner_alone(
    tmp_path: Path, labelled_scene: tuple[Path, Path]
) -> None:
    scene, _ = labelled_scene
    cascade = deploy("edge-cascade-nano", readers=1)
    report = detect(scene, cascade, tmp_path / "cascade")
    alone = detect(scene, deploy(model="edge-lite", batch_size=4, readers=1), tmp_path / "alone")
    info = report["runner"]["cascade"]
    assert info["tiles_triaged"] == report["tiles"] and info["refined_share"] == 1.0  # edge-nano flags all
    assert report["backend"].startswith("cascade(") and alone["tiles"] == report["tiles"]
    with (
        rasterio.open(tmp_path / "cascade" / "probability.tif") as a,
        rasterio.open(tmp_path / "alone" / "probability.tif") as b,
    ):
        assert np.abs(a.read(1).astype(int) - b.read(1).astype(int)).max() <= 1
    assert {"read", "infer", "blend", "write", "finalize"} <= set(report["stages"])


def test_infer_without_positions_refines_the_roi_tiles(real_data: Path) -> None:
    runner, _, r = _cascade("edge-nano", "edge-lite", 0.3)
    tiles = load_tiles(real_data / "bijie", r.spec, size=128, limit=2)
    with runner:
        out = runner.infer(tiles)
    assert out.shape == (2, 1, 128, 128) and runner.tiles_refined == 2


def test_the_bundled_cascade_refines_with_its_refiner_averaged_over_eight_views(real_data: Path) -> None:
    """--profile edge-cascade on a fresh install: Edge-Lite INT8 triage, Edge-Lite FP32 over 8 D4 views;
    a refined tile equals the refiner's own 8-view average."""
    from edge_ls.backends.select import make_runner
    from edge_ls.backends.tta import mean_probability

    d = deploy("edge-cascade")
    assert (d.models["triage"].label, d.models["refiner"].label, d.options.views) == (
        "edge-lite:int8",
        "edge-lite",
        8,
    )
    runner = make_runner(d)
    assert isinstance(runner, CascadeRunner) and runner.refiner_views == 8
    refiner = d.models["refiner"]
    x = load_tiles(real_data / "bijie", refiner.spec, size=128, limit=2)
    runner.roi_threshold = 0.0  # every tile refined
    with runner, OnnxRuntimeRunner(refiner.path) as alone:
        got = runner.infer(x)[:, 0]
        want = mean_probability(alone, refiner.spec, x, 8)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert runner.report()["cascade"]["refiner_views"] == 8


def test_a_cascade_refines_at_the_scales_the_scenes_gsd_allows(real_data: Path) -> None:
    """refiner_scales (1, 0.5): both on a 3 m scene (6 m is inside Edge-Lite's 0.5-12 m), scale 1
    only on a 10 m scene (20 m is not)."""
    from edge_ls.backends.tta import mean_probability

    lite = LoadedModel.load("edge-lite")
    runner = CascadeRunner(OnnxRuntimeRunner(lite.path), OnnxRuntimeRunner(lite.path), triage_spec=lite.spec,
                           refiner_spec=lite.spec, roi_threshold=0.0, neighbours=False, refiner_views=2,
                           refiner_scales=(1.0, 0.5))  # fmt: skip
    x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=2)
    plan = plan_tiles(256, 128, 128, 0.0)
    with runner, OnnxRuntimeRunner(lite.path) as alone:
        runner.bind(plan, gsd_m=3.0)
        at_3m = runner.infer(x)[:, 0]
        assert runner.report()["cascade"]["refiner_scales"] == [1.0, 0.5]
        runner.bind(plan, gsd_m=10.0)
        at_10m = runner.infer(x)[:, 0]
        assert runner.report()["cascade"]["refiner_scales"] == [1.0]
        np.testing.assert_allclose(at_3m, mean_probability(alone, lite.spec, x, 2, (1.0, 0.5)), atol=1e-5)
        np.testing.assert_allclose(at_10m, mean_probability(alone, lite.spec, x, 2), atol=1e-5)
    assert np.abs(at_3m - at_10m).max() > 0.01


def test_an_area_rule_without_neighbours_refines_only_tiles_with_enough_roi_and_caps_the_rest(
    real_data: Path,
) -> None:
    """roi_area: a tile goes to the refiner only when that share of its pixels reaches the ROI; with
    neighbours off nothing waits, and a ruled-out tile never holds a pixel at the decision threshold."""
    lite = LoadedModel.load("edge-lite")
    lite_x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=12)
    plan = plan_tiles(4 * 128, 3 * 128, 128, 0.0)
    with OnnxRuntimeRunner(lite.path) as r:
        triaged = lite.spec.probabilities(r.infer(lite_x)[:, 0])
    roi, threshold = 0.3, 0.47
    shares = (triaged >= roi).reshape(12, -1).mean(axis=1)
    area = float(np.sort(shares)[8]) if np.sort(shares)[8] > 0 else 1e-4  # four tiles reach it
    expected = {i for i in range(12) if shares[i] >= area}
    ruled_out_hot = [i for i in range(12) if i not in expected and triaged[i].max() >= threshold]
    assert 0 < len(expected) < 12 and ruled_out_hot  # the cap has something to do

    nano = LoadedModel.load("edge-nano")
    runner = CascadeRunner(OnnxRuntimeRunner(lite.path), OnnxRuntimeRunner(nano.path), triage_spec=lite.spec,
                           refiner_spec=nano.spec, roi_threshold=roi, batch_size=2, roi_area=area,
                           neighbours=False, decision_threshold=threshold)  # fmt: skip
    tiles = load_tiles(real_data / "bijie", nano.spec, size=128, limit=12)
    with runner, OnnxRuntimeRunner(nano.path) as ref:
        runner.bind(plan)
        got = {}
        for i in range(0, 12, 2):
            out = runner.infer_tiles(tiles[i : i + 2], list(plan)[i : i + 2])
            assert sorted(t.index for t, _, _ in out) == [i, i + 1]  # decided at once: nothing held
            got.update({tile.index: prob for tile, prob, _ in out})
        assert runner.flush() == [] and runner.peak_held == 2
        refined = nano.spec.probabilities(ref.infer(tiles)[:, 0])
    for i in range(12):
        if i in expected:
            np.testing.assert_allclose(got[i], refined[i], atol=1e-4, err_msg=f"tile {i}")
        else:
            assert got[i].max() < threshold, f"tile {i}"
            np.testing.assert_allclose(got[i], np.minimum(triaged[i], threshold), atol=1e-4)
    report = runner.report()["cascade"]
    assert report["tiles_refined"] == len(expected) and report["roi_area"] == area
    assert report["neighbours"] is False


def test_a_cascade_rule_out_by_area_without_positions_is_capped_too(real_data: Path) -> None:
    lite = LoadedModel.load("edge-lite")
    runner = CascadeRunner(OnnxRuntimeRunner(lite.path), OnnxRuntimeRunner(lite.path), triage_spec=lite.spec,
                           refiner_spec=lite.spec, roi_threshold=0.3, roi_area=0.999,
                           decision_threshold=0.47)  # fmt: skip
    x = load_tiles(real_data / "bijie", lite.spec, size=128, limit=3)
    with runner:
        out = runner.infer(x)
    assert runner.tiles_refined == 0 and out.max() < 0.47


def test_window_crops_are_square_inside_the_tile_and_hold_their_window() -> None:
    prob = np.zeros((512, 512), np.float32)
    prob[10:40, 300:330] = 0.9  # in window (row 0, col 2) of the 128-px grid
    prob[480:500, 0:20] = 0.9  # in window (row 3, col 0), at the tile's corner
    assert len(windows(512, 512, 128)) == 16 and windows(300, 300, 128)[-1] == (
        slice(256, 300),
        slice(256, 300),
    )
    crops = window_crops(prob, 0.3, 0.01, 128)
    assert crops is not None and [win for win, _ in crops] == [
        (slice(0, 128), slice(256, 384)),
        (slice(384, 512), slice(0, 128)),
    ]
    for (ys, xs), (top, left, size) in crops:
        assert size == 128 + 2 * WINDOW_MARGIN and 0 <= top <= 512 - size and 0 <= left <= 512 - size
        assert top <= ys.start and ys.stop <= top + size and left <= xs.start and xs.stop <= left + size
    assert crops[0][1] == (0, 256 - WINDOW_MARGIN, 192)  # slid inward at the top border
    assert window_crops(np.full((512, 512), 0.9, np.float32), 0.3, 0.01, 128) is None  # as dear as the tile
    assert window_crops(prob[:128, :128], 0.3, 0.0, 128) is None  # the crop does not fit: the whole tile
    assert not hot_windows(prob, 0.3, 0.5, 128).any()  # 30 x 30 px is under half of a window


def test_a_window_rule_refines_only_the_hot_windows_and_caps_the_rest(real_data: Path) -> None:
    """Real 512-px tiles: edge-nano triage, Edge-Lite refiner on 128-px windows; the hot windows hold the
    refiner's output on their crop, every other pixel the triage's, capped below the threshold."""
    nano, lite = LoadedModel.load("edge-nano"), LoadedModel.load("edge-lite")
    x = load_tiles(real_data / "bijie", lite.spec, size=512, limit=2)
    with OnnxRuntimeRunner(nano.path) as t:  # the triage reads the tiles its own way
        triaged = nano.spec.probabilities(
            t.infer(load_tiles(real_data / "bijie", nano.spec, size=512, limit=2))[:, 0]
        )
    runner = CascadeRunner(OnnxRuntimeRunner(nano.path), OnnxRuntimeRunner(lite.path), triage_spec=nano.spec,
                           refiner_spec=lite.spec, roi_threshold=0.3, roi_area=0.0, neighbours=False,
                           decision_threshold=0.5, roi_window=128)  # fmt: skip
    shares = [(triaged[i] >= 0.3).reshape(4, 128, 4, 128).mean(axis=(1, 3)) for i in range(2)]
    roi = 0.3
    # an area that leaves a few windows hot in each tile (chosen from the triage itself)
    area = float(np.quantile(np.concatenate([s.ravel() for s in shares]), 0.8))
    runner.roi_area = max(area, 1e-4)
    with runner, OnnxRuntimeRunner(lite.path) as alone:
        got = runner.infer(x)[:, 0]
        for i in range(2):
            crops = window_crops(triaged[i], roi, runner.roi_area, 128)
            assert crops  # a few windows, cheaper than the tile
            covered = np.zeros((512, 512), bool)
            for (ys, xs), (top, left, size) in crops:
                want = lite.spec.probabilities(
                    alone.infer(x[i : i + 1, :, top : top + size, left : left + size])[:, 0]
                )[0]
                np.testing.assert_allclose(
                    got[i, ys, xs],
                    want[ys.start - top : ys.stop - top, xs.start - left : xs.stop - left],
                    atol=1e-5,
                )
                covered[ys, xs] = True
            np.testing.assert_allclose(
                got[i][~covered], np.minimum(triaged[i][~covered], runner._cap), atol=1e-5
            )
    report = runner.report()["cascade"]
    assert report["roi_window"] == 128 and report["windows_refined"] > 0
    assert 0 < report["refined_pixel_share"] < 1 and report["tiles_refined"] == 2
