"""Late fusion: D4 equivariance, the members' calibrated mean, a fused tier built from real runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")

from edge_ls.artifact import read_spec  # noqa: E402
from edge_ls.errors import ModelError  # noqa: E402
from edge_ls.export import ensemble  # noqa: E402
from edge_ls.training.config import config_from_dict  # noqa: E402
from edge_ls.training.trainer import SPEC_FILE, Trainer  # noqa: E402


class Asymmetric(torch.nn.Module):
    """A net that is not D4-invariant: a fixed ramp added to a 3x3 conv."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(0, 1, x.shape[-1]).view(1, 1, 1, -1)
        return self.conv(x) + ramp


def test_eight_views_make_the_fusion_d4_equivariant() -> None:
    net = ensemble.LateFusion([Asymmetric(0), Asymmetric(1)], [1.0, 2.0], tta=8).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        y = net(x)
        rotated = net(torch.rot90(x, 1, dims=(-2, -1)))
        flipped = net(torch.flip(x, dims=(-1,)))
    assert torch.allclose(rotated, torch.rot90(y, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(flipped, torch.flip(y, dims=(-1,)), atol=1e-5)
    single = ensemble.LateFusion([Asymmetric(0)], [1.0], tta=1).eval()
    with torch.no_grad():
        assert not torch.allclose(
            single(torch.flip(x, dims=(-1,))), torch.flip(single(x), dims=(-1,)), atol=1e-3
        )


def test_rotation_matches_torch_rot90() -> None:
    x = torch.rand(1, 2, 5, 7)
    for k in range(-3, 5):
        assert torch.equal(ensemble._rot(x, k), torch.rot90(x, k, dims=(-2, -1)))


def test_one_view_is_the_mean_of_temperature_scaled_logits() -> None:
    a, b = Asymmetric(0).eval(), Asymmetric(1).eval()
    net = ensemble.LateFusion([a, b], [2.0, 4.0], tta=1).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x), (a(x) / 2.0 + b(x) / 4.0) / 2, atol=1e-6)


def test_bad_tta_is_a_config_error() -> None:
    with pytest.raises(Exception, match="tta must be one of"):
        ensemble.LateFusion([Asymmetric(0)], [1.0], tta=3)


def _run(real_data: Path, root: Path, seed: int, mean: float = 0.5) -> Path:
    cfg = {
        "run": {
            "name": f"m{seed}",
            "seed": seed,
            "out_dir": str(root / "run"),
            "threads": 1,
            "eval_train": False,
        },
        "data": {
            "roots": [str(real_data / "bijie")],
            "split_file": str(root.parent / "split.json"),
            "crop": 64,
            "val_crop": 64,
            "val_size": 64,
            "batch_size": 2,
            "samples_per_epoch": 4,
            "mean": [mean] * 3,
            "std": [0.25] * 3,
        },
        "model": {"name": "cascade_triage", "dropout": 0.0},
        "train": {"epochs": 1, "lr": 0.01, "step_size": 1},
    }
    Trainer(config_from_dict(cfg)).fit()
    return root / "run"


def test_fuses_real_runs_into_a_calibrated_onnx(real_data: Path, tmp_path: Path) -> None:
    a = _run(real_data, tmp_path / "a", 1)
    b = _run(real_data, tmp_path / "b", 2)
    assert (a / SPEC_FILE).is_file()
    path = ensemble.build([a, b], tmp_path / "fused", name="fused", tier="fusion", tta=4, threads=1)
    spec = read_spec(path)
    assert spec.tier == "fusion" and spec.name == "fused"
    assert spec.provenance["tta_views"] == 4 and len(spec.provenance["members"]) == 2
    assert 0.05 <= spec.threshold <= 0.95 and spec.temperature > 0
    assert "test" in spec.provenance["metrics"] and "val" in spec.provenance["metrics"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: np.random.rand(1, 3, 64, 64).astype(np.float32)})[
        0
    ]
    assert out.shape == (1, 1, 64, 64) and np.isfinite(out).all()

    c = _run(real_data, tmp_path / "c", 3, mean=0.4)
    with pytest.raises(ModelError, match="late fusion needs one input"):
        ensemble.load_members([a, c])
    assert ensemble.main(["--run", str(a), "--run", str(c), "--out", str(tmp_path / "x")]) == 3
