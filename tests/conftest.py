"""Shared fixtures: where the real data lives, and small helpers every test folder uses."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ``../shared`` beside the checkout (as on CI); EDGE_LS_SHARED overrides it.
SHARED = Path(os.environ.get("EDGE_LS_SHARED", REPO.parent / "shared"))
REAL = SHARED / "data" / "real"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the real datasets (``../shared/data/real``); the suite needs it, as CI has it."""
    if not REAL.is_dir():
        pytest.fail(f"real data not found at {REAL}: put shared/ beside the checkout or set EDGE_LS_SHARED")
    return REAL


@pytest.fixture(scope="session")
def geotiffs(real_data: Path) -> Path:
    return real_data / "geotiffs"


@pytest.fixture(autouse=True)
def _no_user_models(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Name lookups see the bundled models only, never the developer's ~/.cache/edge-ls/models."""
    monkeypatch.setenv("EDGE_LS_MODELS", str(tmp_path_factory.mktemp("user-models")))


@pytest.fixture(scope="session")
def labelled_scene(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1024² medium-cover scene mosaicked from the real labelled tiles, with its truth mask."""
    from edge_ls.bench.scenes import load_cell_pool, scene_paths, write_scene

    folder = tmp_path_factory.mktemp("scenes")
    image, truth = scene_paths(folder, 1024, "medium")
    write_scene(image, truth, 1024, "medium", load_cell_pool(real_data))
    return image, truth
