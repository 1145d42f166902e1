"""``edge-ls models``: the bundled models and what their metadata says."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled models", description="List the bundled models.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ls.models.registry import DEFAULT_MODEL, list_bundled

    rows = [("name", "tier", "precision", "bands", "tile", "GSD m", "size kB")]
    for m in list_bundled():
        name = f"{m.name} (default)" if m.name == DEFAULT_MODEL else m.name
        s = m.spec
        rows.append((name, s.tier, s.precision, ",".join(s.bands), str(s.tile_size), f"{s.gsd_m:g}",
                     f"{m.path.stat().st_size / 1024:.0f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0
