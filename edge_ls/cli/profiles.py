"""``edge-ls profiles``: the deployment tiers, and which one ``--profile auto`` picks here."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profiles",
        help="list the deployment tier profiles",
        description="List the tier profiles (profiles/*.toml) and say which one '--profile auto' picks here.",
    )
    p.add_argument("name", nargs="?", help="show one profile in full (name or TOML file)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edge_ls.hardware import detect_hardware, pick_profile
    from edge_ls.profiles import load_all, load_profile

    profiles = [load_profile(args.name)] if args.name else load_all()
    hw = detect_hardware()
    auto, reason = pick_profile(hw)
    if args.json:
        print(
            json.dumps(
                {
                    "profiles": [_as_dict(p) for p in profiles],
                    "auto": {"profile": auto, "reason": reason, "hardware": hw.describe()},
                },
                indent=2,
            )
        )
        return 0
    rows = [("tier", "models", "tile", "batch", "overlap", "precision", "backends", "installed")]
    for p in profiles:
        models = ", ".join(f"{role}={ref}" if p.is_cascade else ref for role, ref in p.models.items())
        rows.append(
            (
                p.tier,
                models,
                str(p.tile),
                str(p.batch),
                f"{p.overlap:g}",
                p.precision,
                " > ".join(p.backends),
                "yes" if all(_installed(m, role) for role, m in p.models.items()) else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if args.name:
        _details(profiles[0])
    print(f"\nauto here: {auto}: {reason}")
    return 0


def install_hint(profile) -> str | None:
    """The profile's install hint (kept for callers of this module; see ``Profile.install_hint``)."""
    return profile.install_hint


def _installed(ref: str, role: str) -> bool:
    """Whether a model reference resolves on this installation (bundled name or existing file)."""
    from edge_ls.errors import ModelError
    from edge_ls.models.registry import resolve

    try:
        resolve(ref, None if role == "primary" else role)
    except ModelError:
        return False
    return True


def _details(p) -> None:
    trt = p.tensorrt
    decision = "model default" if p.decision_threshold is None else f"{p.decision_threshold:g}"
    roi = ""
    if p.roi_threshold is not None:
        area = f" on {p.roi_area:.1%} of a tile" if p.roi_area else " anywhere"
        near = " + neighbours" if p.roi_neighbours else ""
        win = f", refined in {p.roi_window}-px windows" if p.roi_window else ""
        roi = f", roi {p.roi_threshold:g}{area}{near}{win}"
    print(f"\n{p.tier}: {p.description}")
    print(f"  thresholds: decision {decision}{roi}")
    who = "refiner" if "refiner" in p.models else "model"
    print(f"  averaging: {who} over {p.views} D4 view(s) at scale(s) {', '.join(f'{s:g}' for s in p.scales)}")
    print(
        f"  outputs: uncertainty {'yes' if p.uncertainty else 'no'}; "
        f"accuracy budget {p.accuracy_budget_f1:g} F1 points"
    )
    print(
        f"  tensorrt (min/opt/max): batch {'/'.join(map(str, trt.batch.as_tuple()))}, "
        f"tile {'/'.join(map(str, trt.tile.as_tuple()))}; workspace {trt.workspace_mb} MB; "
        f"version-compatible {'yes' if trt.version_compatible else 'no'}; "
        f"hardware compatibility {trt.hardware_compatibility}"
    )
    print(f"  file: {p.source}")


def _as_dict(p) -> dict:
    trt = p.tensorrt
    return {
        "tier": p.tier,
        "description": p.description,
        "models": dict(p.models),
        "tile": p.tile,
        "batch": p.batch,
        "overlap": p.overlap,
        "precision": p.precision,
        "backends": list(p.backends),
        "thresholds": {
            "decision": p.decision_threshold,
            "roi": p.roi_threshold,
            "roi_area": p.roi_area,
            "roi_neighbours": p.roi_neighbours,
            "roi_window": p.roi_window,
        },
        "views": p.views,
        "scales": list(p.scales),
        "outputs": {"uncertainty": p.uncertainty},
        "accuracy_budget_f1": p.accuracy_budget_f1,
        "tensorrt": {
            "batch": trt.batch.as_tuple(),
            "tile": trt.tile.as_tuple(),
            "workspace_mb": trt.workspace_mb,
            "version_compatible": trt.version_compatible,
            "hardware_compatibility": trt.hardware_compatibility,
        },
        "installed": all(_installed(m, role) for role, m in p.models.items()),
        "file": str(p.source) if p.source else None,
    }
