"""``edge-ls models``: the bundled models and what their metadata says."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="list the models --model accepts by name",
        description="List the bundled models, then those in the user's model folder "
        "($EDGE_LS_MODELS, else ~/.cache/edge-ls/models).",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ls.models.registry import BUNDLED_DIR, DEFAULT_MODEL, list_models

    models, broken = list_models()
    rows = [("name", "tier", "precision", "bands", "tile", "GSD m", "size kB", "where")]
    for m in models:
        name = f"{m.name} (default)" if m.name == DEFAULT_MODEL else m.name
        s = m.spec
        rows.append(
            (
                name,
                s.tier,
                s.precision,
                ",".join(s.bands),
                str(s.tile_size),
                f"{s.gsd_m:g}",
                f"{m.path.stat().st_size / 1024:.0f}",
                "bundled" if m.path.is_relative_to(BUNDLED_DIR) else str(m.path.parent),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if broken:
        print(f"\n{len(broken)} file(s) in the user's model folder cannot be used:")
        for b in broken:
            print(f"  {b.path.name}  ({b.path.parent}): {b.reason}")
    return 0
