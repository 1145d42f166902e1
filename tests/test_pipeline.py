"""The streaming pipeline end to end on real rasters: outputs, seams, report, failures."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
from onnx import TensorProto, helper, numpy_helper

from edge_ls.artifact import ModelSpec, write_spec
from edge_ls.backends.onnxrt import OnnxRuntimeRunner
from edge_ls.errors import EdgeLSError, OutputError
from edge_ls.io.outputs import _RawSink
from edge_ls.io.source import RasterSource
from edge_ls.pipeline import (
    DetectOptions,
    LoadedModel,
    _ImageryCells,
    detect,
    flagged_warning,
    gsd_warning,
)
from edge_ls.tiling import plan_tiles

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "chattogram_s2.tif"
REPORT_KEYS = {
    "tiles",
    "tiles_per_s",
    "tile_latency_ms_p50",
    "tile_latency_ms_p95",
    "peak_rss_mb",
    "peak_vram_mb",
    "gsd_m",
    "area_km2",
    "tiles_per_km2",
    "latency_min_per_km2",
    "latency_min_per_km2_at_0p1m",
    "model",
    "tier",
    "precision",
    "backend",
}


def blur_model(path: Path, kernel: int = 9, tile: int = 128) -> Path:
    """A real ONNX conv model: a k x k box blur of the band mean (zero padding, like a CNN's)."""
    weight = np.full((1, 3, kernel, kernel), 1.0 / (3 * kernel * kernel), dtype=np.float32)
    node = helper.make_node("Conv", ["image", "w"], ["prob"], pads=[kernel // 2] * 4)
    graph = helper.make_graph(
        [node],
        "blur",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 1, "h", "w"])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    write_spec(
        model,
        ModelSpec(
            name="blur",
            tier="test",
            bands=("red", "green", "blue"),
            mean=(0, 0, 0),
            std=(1, 1, 1),
            input_range="8bit",
            gsd_m=300.0,
            tile_size=tile,
            overlap=0.25,
            activation="sigmoid",
            threshold=0.3,
        ),
    )
    onnx.save(model, path)
    return path


def test_sample_scene_end_to_end(tmp_path: Path) -> None:
    report = detect(SAMPLE, "edge-nano", tmp_path / "out")
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {
        "probability.tif",
        "mask.tif",
        "confidence.tif",
        "detections.geojson",
        "quicklook.png",
        "report.json",
    } <= names
    assert not [n for n in names if "partial" in n]
    assert set(report) >= REPORT_KEYS
    saved = json.loads((out / "report.json").read_text())
    assert saved["tiles"] == report["tiles"] == 15  # 1152 x 2048 at 512 px, stride 410: 3 x 5
    assert saved["backend"] == "onnxruntime" and saved["peak_vram_mb"] is None
    # What was asked and what the integer stride gave; no profile; the 10 m scene vs a 1 m model.
    assert (saved["overlap_requested"], saved["overlap_used"], saved["profile"]) == (0.2, 0.1992, None)
    assert saved["overlap"] == saved["overlap_used"]  # the existing key keeps its meaning
    assert len(saved["warnings"]) == 1 and "GSD 9.6 m is far from the ~1 m" in saved["warnings"][0]
    # Report arithmetic: tiles per km² from GSD and stride, latency from throughput.
    gsd = report["gsd_m"]
    assert 9.0 < gsd < 10.5  # 8.98e-5 degrees at 22.4° N
    assert report["tiles_per_km2"] == pytest.approx((1000 / (gsd * 410)) ** 2, rel=1e-2)
    assert report["latency_min_per_km2"] == pytest.approx(
        report["tiles_per_km2"] / report["tiles_per_s"] / 60, rel=2e-2
    )
    assert report["latency_min_per_km2_at_0p1m"] == pytest.approx(
        (1000 / (0.1 * 409.6)) ** 2 / report["tiles_per_s"] / 60, rel=2e-2
    )
    with rasterio.open(SAMPLE) as src, rasterio.open(out / "probability.tif") as prob:
        assert prob.crs == src.crs and prob.transform == src.transform
        assert (prob.width, prob.height) == (src.width, src.height)
        assert prob.overviews(1), "probability COG has no overviews"
        nodata_in = ~src.dataset_mask().astype(bool)
        p = prob.read(1, masked=True)
        assert nodata_in.any() and p.mask[nodata_in].all(), "input nodata must be nodata in the output"
    with rasterio.open(out / "mask.tif") as mask:
        m = mask.read(1, masked=True)
        assert set(np.unique(m.compressed())) <= {0, 1}


def test_quicklook_imagery_is_the_block_average_of_the_input(tmp_path: Path) -> None:
    """The background streamed from the tiles the readers read equals a 2 x 2 average read of the input
    (the 1152 x 2048 sample at the 1024-px quicklook), in the model's view of the bands."""
    spec = LoadedModel.load("edge-nano").spec
    with RasterSource(SAMPLE, spec) as source:
        plan = plan_tiles(source.width, source.height, 256, 0.2)
        h, w = source.height // 2, source.width // 2
        imagery = _ImageryCells(source, spec, (h, w))
        with source.open_handle() as handle:
            for tile in plan:
                window = rasterio.windows.Window(tile.x0, tile.y0, tile.width, tile.height)
                x, valid = source.read(handle, window)
                imagery.add(plan, tile, x, valid)
            whole, valid = source.read(handle, rasterio.windows.Window(0, 0, source.width, source.height))
    streamed = imagery.render(h, w).astype(np.float64)
    mean, std = np.asarray(spec.mean).reshape(3, 1, 1), np.asarray(spec.std).reshape(3, 1, 1)
    unit = (whole * std + mean)[imagery.picks].reshape(3, h, 2, w, 2)
    weight = valid.reshape(1, h, 2, w, 2)
    with np.errstate(invalid="ignore"):
        expected = (unit * weight).sum(axis=(2, 4)) / weight.sum(axis=(2, 4))
    expected = np.clip(np.nan_to_num(expected), 0, 1).transpose(1, 2, 0) * 255
    assert np.abs(streamed - expected).max() <= 1.0  # rounding to uint8 only
    assert streamed.std() > 10  # real imagery, not a blank


def test_conv_model_through_the_pipeline_matches_the_whole_image(tmp_path: Path, geotiffs: Path) -> None:
    """The stitched result of a translation-equivariant model matches one pass over the whole raster."""
    model = blur_model(tmp_path / "blur.onnx")
    src_path = geotiffs / "rasterio" / "RGB.byte.tif"
    options = DetectOptions(readers=2, batch_size=3, layers="float32")
    report = detect(src_path, model, tmp_path / "out", options)
    assert report["tiles"] > 20
    spec = LoadedModel.load(model).spec
    with RasterSource(src_path, spec) as source, source.open_handle() as handle:
        x, valid = source.read(handle, rasterio.windows.Window(0, 0, source.width, source.height))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    whole = session.run(None, {"image": x[None]})[0][0, 0]
    with rasterio.open(tmp_path / "out" / "probability.tif") as prob:
        stitched = prob.read(1, masked=True)
    np.testing.assert_array_equal(stitched.mask, ~valid)
    err = np.abs(stitched.filled(0) - whole)[valid]
    assert err.mean() < 1e-3 and err.max() < 0.05


def test_two_inference_streams_give_the_same_outputs_as_one(tmp_path: Path, geotiffs: Path) -> None:
    """Concurrent streams blend tiles in a different order: same probabilities (to float rounding),
    same mask, same polygons, and bands still reach the writer in order."""
    model = blur_model(tmp_path / "blur.onnx")
    src_path = geotiffs / "rasterio" / "RGB.byte.tif"
    one = detect(src_path, model, tmp_path / "one", DetectOptions(streams=1, batch_size=2, layers="float32"))
    two = detect(
        src_path,
        model,
        tmp_path / "two",
        DetectOptions(streams=2, batch_size=2, queue_depth=2, layers="float32"),
    )
    assert one["tiles"] == two["tiles"] and two["tiles_inferred"] == one["tiles_inferred"]
    with (
        rasterio.open(tmp_path / "one" / "probability.tif") as a,
        rasterio.open(tmp_path / "two" / "probability.tif") as b,
    ):
        np.testing.assert_allclose(a.read(1), b.read(1), atol=1e-6)
    with rasterio.open(tmp_path / "one" / "mask.tif") as a, rasterio.open(tmp_path / "two" / "mask.tif") as b:
        assert (a.read(1) != b.read(1)).mean() < 1e-4  # only pixels within rounding of the threshold
    polygons = [json.loads((tmp_path / d / "detections.geojson").read_text()) for d in ("one", "two")]
    assert abs(len(polygons[0]["features"]) - len(polygons[1]["features"])) <= 1


def test_runner_concurrency_sets_the_streams(tmp_path: Path) -> None:
    model = blur_model(tmp_path / "blur.onnx")
    runner = OnnxRuntimeRunner(model, streams=2)
    assert runner.concurrency == 2 and runner.intra_op_threads >= 1
    with pytest.raises(ValueError, match="streams"):
        OnnxRuntimeRunner(model, streams=0)


def test_failure_in_one_of_two_streams_stops_the_run(tmp_path: Path, geotiffs: Path) -> None:
    model = blur_model(tmp_path / "blur.onnx")
    out = tmp_path / "out"

    def factory(m, o):
        runner = _FailingRunner(m.path, fail_after=5)
        runner.concurrency = 2
        return runner

    with pytest.raises(EdgeLSError, match="runner died"):
        detect(geotiffs / "rasterio" / "RGB.byte.tif", model, out, DetectOptions(), runner_factory=factory)
    assert not out.exists() or not any(out.iterdir())


class _FailingRunner(OnnxRuntimeRunner):
    def __init__(self, path: Path, fail_after: int) -> None:
        super().__init__(path)
        self.calls, self.fail_after = 0, fail_after

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls > self.fail_after:
            raise EdgeLSError("runner died")
        return super().infer(batch)


def test_failure_mid_run_leaves_earlier_outputs_and_no_partial(tmp_path: Path, geotiffs: Path) -> None:
    model = blur_model(tmp_path / "blur.onnx")
    out = tmp_path / "out"
    detect(geotiffs / "rasterio" / "RGB.byte.tif", model, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    with pytest.raises(EdgeLSError, match="runner died"):
        detect(
            geotiffs / "rasterio" / "RGB.byte.tif",
            model,
            out,
            DetectOptions(),
            runner_factory=lambda m, o: _FailingRunner(m.path, fail_after=5),
        )
    after = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert after == before, "a failed run must not touch the outputs of an earlier one"


def test_disk_full_mid_write_is_an_output_error_and_leaves_nothing(
    tmp_path: Path, geotiffs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = blur_model(tmp_path / "blur.onnx")
    calls = {"n": 0}
    real_write = _RawSink.write

    def write_then_fill_disk(self, row_off, band):  # the disk fills up after a few bands
        calls["n"] += 1
        if calls["n"] > 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, row_off, band)

    monkeypatch.setattr(_RawSink, "write", write_then_fill_disk)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left on device"):
        detect(geotiffs / "rasterio" / "RGB.byte.tif", model, out)
    assert calls["n"] > 4
    assert not out.exists() or not any(out.iterdir())


def test_unwritable_output_folder_fails_before_inference(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutputError):
        detect(SAMPLE, "edge-nano", blocker / "out")


def _spec(**changes) -> ModelSpec:
    base = LoadedModel.load("edge-nano").spec
    return ModelSpec.from_dict({**json.loads(base.to_json()), **changes})


def test_gsd_warning_is_about_the_models_training_gsd() -> None:
    spec = _spec(gsd_m=1.0)
    assert gsd_warning(None, spec) is None  # no georeference: nothing to compare
    assert gsd_warning(3.0, spec) is None and gsd_warning(0.3, spec) is None  # within a factor 4
    far = gsd_warning(300.0, spec)
    assert "300 m is far from the ~1 m" in far
    assert "is far from" in gsd_warning(0.1, spec)
    # A model that records its trained range is judged on that range (a factor 2 beyond either end).
    ranged = type("Spec", (), {"name": "x", "gsd_m": 1.0, "gsd_range_m": (0.5, 3.0)})()
    assert gsd_warning(5.9, ranged) is None and gsd_warning(0.26, ranged) is None
    assert "far from the 0.5-3 m model" in gsd_warning(6.5, ranged)


def test_flagged_warning_above_half_of_the_valid_area() -> None:
    assert flagged_warning({"valid_pixels": 100, "detected_pixels": 50}) is None
    assert "51% of the valid area" in flagged_warning({"valid_pixels": 100, "detected_pixels": 51})
    assert flagged_warning({"valid_pixels": 0, "detected_pixels": 0}) is None


def test_constant_scene_gets_honest_warnings(tmp_path: Path, geotiffs: Path, caplog) -> None:
    """A flat image: warned as constant, and (the blur model flags all of it) as mostly flagged; the
    textured original gets neither."""
    model = blur_model(tmp_path / "blur.onnx")
    with rasterio.open(geotiffs / "rasterio" / "RGB.byte.tif") as src:
        profile = src.profile
        data = src.read()
    flat = np.where(data > 0, np.uint8(180), np.uint8(0))  # same footprint and nodata, no contrast
    with rasterio.open(tmp_path / "flat.tif", "w", **profile) as dst:
        dst.write(flat)
    with caplog.at_level("WARNING", logger="edge_ls.pipeline"):
        report = detect(tmp_path / "flat.tif", model, tmp_path / "flat")
    text = " | ".join(report["warnings"])
    assert "constant or nearly so" in text and "of the valid area is flagged" in text
    assert json.loads((tmp_path / "flat" / "report.json").read_text())["warnings"] == report["warnings"]
    assert [r.getMessage() for r in caplog.records] == report["warnings"]  # one line each on stderr
    real = detect(geotiffs / "rasterio" / "RGB.byte.tif", model, tmp_path / "real")
    assert not any("constant" in w for w in real["warnings"])
