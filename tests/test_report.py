import pytest

from edge_ls.report import format_table, significant, tiles_per_km2


def test_tiles_per_km2_matches_the_seed_reference() -> None:
    # 512-px tiles, 20% overlap (stride 409.6 px) at 0.10 m: the seed's "about 600 effective tiles per km²".
    assert tiles_per_km2(0.10, 512, 0.2) == pytest.approx(596.05, rel=1e-4)
    assert tiles_per_km2(10.0, 512, 0.2) == pytest.approx(0.0596, rel=1e-3)


def test_significant_keeps_small_figures_readable() -> None:
    assert significant(0.064566530) == 0.06457
    assert significant(1234.5678) == 1235.0
    assert significant(None) is None and significant(0.0) == 0.0


def test_table_says_no_gpu_for_missing_vram() -> None:
    table = format_table({"model": "m", "peak_vram_mb": None, "tiles_per_s": 3.5})
    assert "n/a (no GPU)" in table and "3.5" in table
