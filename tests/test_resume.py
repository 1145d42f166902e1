"""Resume inside a scene, in process: a run that died after recording durable rows leaves its temporary
folder; a run with the same key reopens it, starts at the first tile row reaching those rows, and
commits outputs byte-identical to an uninterrupted run's. Anything doubtful means a full restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_ls import pipeline
from edge_ls.backends.base import Runner
from edge_ls.backends.select import make_runner
from edge_ls.blend import RowBandBlender
from edge_ls.errors import EdgeLSError
from edge_ls.io import progress
from edge_ls.io.outputs import OutputSet
from edge_ls.pipeline import DetectOptions, _as_deployment, detect
from edge_ls.stream import resume_tile_row
from edge_ls.tiling import plan_tiles
from tests.cli.test_detect_many import digests
from tests.test_pipeline import blur_model

KEY = "k" * 64


def _partials(out: Path) -> list[Path]:
    return sorted(out.glob(".edge_ls.*.partial-*"))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _die_mid_scene(scene: Path, model: Path, out: Path, options: DetectOptions, monkeypatch) -> Path:
    """A run that fails half-way and, like a SIGKILL-ed one, cleans nothing up; its folder is then
    renamed to a dead process (a kill leaves the pid of a process that is gone)."""

    def keep(self: OutputSet) -> None:  # what a kill does: nothing
        self._done = True
        for sink in [*self._sinks.values(), self._resume_sink]:
            if sink is not None:
                sink.discard()
        if self._detections is not None:
            self._detections.discard()

    def failing(_model: object, _options: DetectOptions) -> Runner:
        """The runner this deployment uses, dying at its first batch after 40 tiles (of 58; batches
        hold what is waiting, so their count says little), once the writer has recorded two bands
        (on its own thread: waited for, so the test does not depend on timing)."""
        runner = make_runner(_as_deployment(model, options))
        infer_tiles, inferred = runner.infer_tiles, [0]

        def two_bands_recorded() -> bool:
            records = [r for p in _partials(out) if (r := progress.read(p))]
            return bool(records) and records[0].rows >= 2 * records[0].band_rows

        def infer_or_die(batch, tiles):  # type: ignore[no-untyped-def]
            if inferred[0] >= 40:
                end = time.monotonic() + 20.0
                while not two_bands_recorded() and time.monotonic() < end:
                    time.sleep(0.01)
                raise EdgeLSError("runner died")
            inferred[0] += len(tiles)
            return infer_tiles(batch, tiles)

        runner.infer_tiles = infer_or_die  # type: ignore[method-assign]
        return runner

    with monkeypatch.context() as m:
        m.setattr(OutputSet, "abort", keep)
        with pytest.raises(EdgeLSError, match="runner died"):
            detect(scene, model, out, options, runner_factory=failing, resume_key=KEY)
    [partial] = _partials(out)
    dead = partial.with_name(f"{partial.name.rpartition('-')[0]}-{_dead_pid()}")
    partial.rename(dead)
    return dead


@pytest.fixture(autouse=True)
def _checkpoint_every_band(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "CHECKPOINT_S", 0.0)


@pytest.mark.parametrize(
    "options",
    [
        DetectOptions(batch_size=4),
        DetectOptions(batch_size=4, layers="float32"),
        DetectOptions(batch_size=4, uncertainty_tta=2),  # a second blender and raw layer resumed too
    ],
    ids=["percent", "float32", "uncertainty"],
)
def test_a_dead_runs_rows_are_resumed_and_the_outputs_are_identical(
    tmp_path: Path, geotiffs: Path, monkeypatch: pytest.MonkeyPatch, options: DetectOptions
) -> None:
    scene, model = geotiffs / "rasterio" / "RGB.byte.tif", blur_model(tmp_path / "blur.onnx")
    reference = tmp_path / "reference"
    detect(scene, model, reference, options)
    out = tmp_path / "out"
    partial = _die_mid_scene(scene, model, out, options, monkeypatch)
    record = progress.read(partial)
    assert record is not None and record.key == KEY and record.rows % record.band_rows == 0
    assert record.rows >= 2 * record.band_rows  # so the rerun starts past the first tile row

    report = detect(scene, model, out, options, resume_key=KEY)

    assert digests(out) == digests(reference) and len(digests(out)) >= 7
    committed = json.loads((out / "report.json").read_text())
    assert committed["resumed_from_row"] == record.rows
    assert report["tiles_inferred"] < json.loads((reference / "report.json").read_text())["tiles_inferred"]
    expected = json.loads((reference / "report.json").read_text())["output_stats"]
    assert committed["output_stats"] == expected  # counts re-accumulated from the durable rows
    assert not _partials(out)


def test_a_partial_with_another_key_is_discarded(
    tmp_path: Path, geotiffs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene, model = geotiffs / "rasterio" / "RGB.byte.tif", blur_model(tmp_path / "blur.onnx")
    reference = tmp_path / "reference"
    detect(scene, model, reference)
    out = tmp_path / "out"
    _die_mid_scene(scene, model, out, DetectOptions(), monkeypatch)
    detect(scene, model, out, resume_key="another" + KEY)  # e.g. another threshold: another key
    assert "resumed_from_row" not in json.loads((out / "report.json").read_text())
    assert digests(out) == digests(reference)
    assert not _partials(out)


@pytest.mark.parametrize("damage", ["truncated", "tampered", "missing raw file"])
def test_a_doubtful_progress_record_means_a_full_restart(
    tmp_path: Path, geotiffs: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    scene, model = geotiffs / "rasterio" / "RGB.byte.tif", blur_model(tmp_path / "blur.onnx")
    reference = tmp_path / "reference"
    detect(scene, model, reference)
    out = tmp_path / "out"
    partial = _die_mid_scene(scene, model, out, DetectOptions(), monkeypatch)
    record = partial / progress.PROGRESS
    if damage == "truncated":
        record.write_text(record.read_text()[:40])
    elif damage == "tampered":  # more rows than were durable: the checksum no longer matches
        doc = json.loads(record.read_text())
        record.write_text(json.dumps({**doc, "rows": doc["rows"] + doc["band_rows"]}))
    else:
        (partial / "stream.mask.raw").unlink()
    detect(scene, model, out, resume_key=KEY)
    assert "resumed_from_row" not in json.loads((out / "report.json").read_text())
    assert digests(out) == digests(reference)
    assert not _partials(out)


def test_progress_record_round_trip_and_refusals(tmp_path: Path) -> None:
    record = progress.Progress(KEY, rows=256, width=100, height=1000, band_rows=128)
    progress.write(tmp_path, record)
    assert progress.read(tmp_path) == record
    assert not list(tmp_path.glob(".*.tmp"))
    for rows in (0, 1000):  # nothing durable, or everything (then the scene was finishing: redo it)
        progress.write(tmp_path, progress.Progress(KEY, rows, 100, 1000, 128))
        assert progress.read(tmp_path) is None
    (tmp_path / progress.PROGRESS).write_text("{not json")
    assert progress.read(tmp_path) is None


def test_the_blender_refuses_a_resume_that_would_miss_a_tile_rows_share() -> None:
    plan = plan_tiles(500, 1000, 128, 0.25)  # stride 96: tile row j covers rows 96j .. 96j + 127
    assert resume_tile_row(plan, 192) == 1  # tile row 0 ends at 128 <= 192, tile row 1 reaches it
    assert resume_tile_row(plan, 96) == 0
    with pytest.raises(ValueError, match="reaches row"):
        RowBandBlender(plan).resume_at(192, 2)  # tile row 1 adds to rows 192..223 too
    with pytest.raises(ValueError, match="cannot resume"):
        RowBandBlender(plan).resume_at(100, 0)  # not a band's first row
