"""Issue 13's kill test: kill a 3-scene ``edge-ls detect`` run at N random moments, rerun the same
command, and count the reruns whose outputs are byte-identical to an uninterrupted run's.

Run ``python bench/signals.py [--kills N] [--seed S] [--signal KILL|TERM|INT|HUP] [--json OUT.json]``.
The scenes are three copies of the bundled sample scene (1152 x 2048 px, edge-nano); a kill moment is
drawn uniformly over the uninterrupted run's wall time. Compared per scene: sha256 of every output a
reader sees, ``report.json`` and ``item.json`` aside (timings, creation time). Also counted: reruns
whose exit code is not 0, kills that left a temporary folder after the rerun, and mixed sets (a
scene folder whose files match neither the reference nor nothing). Prints one JSON summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "chattogram_s2.tif"
VOLATILE = {"report.json", "item.json"}


def _detect(scenes: list[str], out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "edge_ls",
        "detect",
        *scenes,
        "--out",
        str(out),
        "--model",
        "edge-nano",
        "--quiet",
    ]


def _digests(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name not in VOLATILE
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--signal", default="KILL", choices=("KILL", "TERM", "INT", "HUP"))
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    sig = getattr(signal, f"SIG{args.signal}")
    root = Path(tempfile.mkdtemp(prefix="edge-ls-signals-"))
    try:
        scenes = []
        for name in ("s1", "s2", "s3"):
            path = root / "in" / f"{name}.tif"
            path.parent.mkdir(exist_ok=True)
            shutil.copyfile(SAMPLE, path)
            scenes.append(str(path))
        t0 = time.perf_counter()
        subprocess.run(_detect(scenes, root / "reference"), check=True, capture_output=True)
        wall = time.perf_counter() - t0
        reference = {n: _digests(root / "reference" / n) for n in ("s1", "s2", "s3")}
        rows = []
        for k in range(args.kills):
            out = root / f"run{k}"
            at = rng.uniform(0.0, wall)
            proc = subprocess.Popen(_detect(scenes, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            time.sleep(at)
            finished_first = proc.poll() is not None
            if not finished_first:
                proc.send_signal(sig)
            code = proc.wait()
            after_kill = {n: _digests(out / n) for n in reference}
            mixed = [n for n, d in after_kill.items() if d and d != reference[n]]
            rerun = subprocess.run(_detect(scenes, out), capture_output=True, text=True)
            same = all(_digests(out / n) == reference[n] for n in reference)
            left = [str(p.relative_to(out)) for p in out.rglob(".edge_ls.*.partial-*")]
            rows.append(
                {
                    "kill_at_s": round(at, 3),
                    "exit_after_signal": code,
                    "ended_before_the_signal": finished_first,
                    "mixed_sets_after_kill": mixed,
                    "rerun_exit": rerun.returncode,
                    "identical": same,
                    "temporary_left": left,
                }
            )
            shutil.rmtree(out, ignore_errors=True)
        summary = {
            "signal": args.signal,
            "kills": args.kills,
            "seed": args.seed,
            "uninterrupted_wall_s": round(wall, 2),
            "identical_after_rerun": sum(r["identical"] for r in rows),
            "rerun_failures": sum(r["rerun_exit"] != 0 for r in rows),
            "mixed_sets": sum(bool(r["mixed_sets_after_kill"]) for r in rows),
            "temporary_left": sum(bool(r["temporary_left"]) for r in rows),
            "runs": rows,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0 if summary["identical_after_rerun"] == args.kills else 1


if __name__ == "__main__":
    sys.exit(main())
