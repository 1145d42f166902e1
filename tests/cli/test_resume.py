"""Resume inside a scene through the CLI: a real ``edge-ls detect`` SIGKILL-ed after it recorded
durable rows, rerun with the same command, gives the uninterrupted run's outputs byte for byte and says
it resumed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from edge_ls.io import progress
from tests.cli.test_detect_cli import SAMPLE
from tests.cli.test_detect_many import _wait_for, digests
from tests.test_cluster import MEASURED

#: What differs between two runs of one scene whatever happens (timings, memory, the host), and what a
#: resumed run reports differently by design (fewer tiles inferred, where it resumed).
REPORT_VOLATILE = MEASURED | {
    "host",
    "hardware",
    "tiles_inferred",
    "tiles_skipped_nodata",
    "runner",
    "resumed_from_row",
}


def big_scene(path: Path, side: int = 3000) -> Path:
    """A ``side``² scene tiled from the sample (mirrored copies, so it stays real imagery)."""
    with rasterio.open(SAMPLE) as src:
        data, profile, names = src.read(), src.profile, src.descriptions
    rows = [
        np.concatenate([data if (i + j) % 2 == 0 else data[:, ::-1, ::-1] for j in range(3)], axis=2)
        for i in range(2)
    ]
    big = np.concatenate(rows, axis=1)[:, :side, :side]
    with rasterio.open(path, "w", **(profile | {"width": side, "height": side})) as dst:
        dst.write(big)
        dst.descriptions = names
    return path


def _command(scene: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "edge_ls", "detect", str(scene), "--out", str(out), "--model", "edge-nano",
            "--tile-size", "256", "--quiet"]  # fmt: skip


def _report(out: Path) -> dict:
    doc = json.loads((out / "report.json").read_text())
    return {k: v for k, v in doc.items() if k not in REPORT_VOLATILE}


@pytest.mark.slow
def test_sigkill_mid_scene_then_rerun_resumes_and_gives_the_uninterrupted_outputs(tmp_path: Path) -> None:
    scene = big_scene(tmp_path / "big.tif")
    reference = tmp_path / "reference"
    assert subprocess.run(_command(scene, reference), capture_output=True).returncode == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(scene, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    records = lambda: [r for p in out.glob(".edge_ls.*.partial-*") if (r := progress.read(p))]  # noqa: E731
    _wait_for(lambda: bool(records()), proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [record] = records()
    assert 0 < record.rows < 3000

    rerun = subprocess.run(_command(scene, out), capture_output=True, text=True)

    assert rerun.returncode == 0, rerun.stderr
    assert digests(out) == digests(reference) and len(digests(out)) >= 7
    assert json.loads((out / "report.json").read_text())["resumed_from_row"] >= record.rows
    assert _report(out) == _report(reference)
    assert not list(out.glob(".edge_ls.*.partial-*"))
