"""ONNX parity check: float32 rounding on large outputs is not a wrong export."""

from __future__ import annotations

import numpy as np
import pytest

from edge_ls.errors import ModelError
from edge_ls.export import onnx_export


def _fake_onnx(monkeypatch: pytest.MonkeyPatch, offset: float) -> None:
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, batch, threads=None: _REF + offset)


_REF = np.array([[[[315.0, -629.0], [0.5, 0.0]]]], dtype=np.float32)
_BATCH = np.zeros((1, 3, 2, 2), dtype=np.float32)


def test_large_logits_within_relative_tolerance_pass(monkeypatch, tmp_path):
    # the baseline_inceptionv3 case: max |diff| 1.2e-3 at |logit| 315 (relative 4e-6)
    got = _REF.astype(np.float64) * (1 + 4e-6)
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, batch, threads=None: got)
    diff = onnx_export._parity(tmp_path / "m.onnx", None, _BATCH, _REF, 1e-3)
    assert diff == pytest.approx(629 * 4e-6, rel=1e-3)


def test_small_outputs_keep_the_absolute_tolerance(monkeypatch, tmp_path):
    ref = np.zeros((1, 1, 2, 2), dtype=np.float32)
    monkeypatch.setattr(onnx_export, "run_onnx", lambda path, batch, threads=None: ref + 1.2e-3)
    with pytest.raises(ModelError, match="disagree"):
        onnx_export._parity(tmp_path / "m.onnx", None, _BATCH, ref, 1e-3)


def test_real_disagreement_still_fails(monkeypatch, tmp_path):
    _fake_onnx(monkeypatch, 0.5)
    with pytest.raises(ModelError, match="disagree"):
        onnx_export._parity(tmp_path / "m.onnx", None, _BATCH, _REF, 1e-3)
