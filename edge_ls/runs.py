"""Many scenes on this machine: one model load, one scene after another, each committed on its own.

:func:`run_local` wraps the deployment's runner in a :class:`~edge_ls.backends.shared.SharedRunner`
(the model loads once), runs :func:`edge_ls.pipeline.detect` per scene, and records each scene in the
run journal (:mod:`edge_ls.journal`): a scene whose finished set is intact with the same key is
skipped, a failing scene (an :class:`~edge_ls.errors.EdgeLSError`: a corrupt raster, a full disk) is
recorded with its exit code and the run goes on. The run's exit code (:func:`exit_code`) is that of
the **first** failing scene in input order, 0 when every scene is done or skipped.

Signals (:func:`stop_on_signals`): SIGINT, SIGTERM and SIGHUP raise :class:`Stopped` in the main
thread once; the scene in progress removes its temporary folder on the way out (its earlier set, if
any, stays whole), the journal says ``interrupted``, and every further signal is ignored until the
cleanup is over (a second Ctrl-C used to abort the interpreter mid-cleanup). Exit 128 + the signal's
number: 130, 143, 129.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from edge_ls import __version__
from edge_ls.backends.select import make_runner
from edge_ls.backends.shared import SharedRunner
from edge_ls.deployment import Deployment, DetectOptions
from edge_ls.errors import EdgeLSError, first_line
from edge_ls.io.stac import model_sha256
from edge_ls.journal import Journal, checksums
from edge_ls.scenes import Scene, SceneResult, full_key, scene_out_dir

#: The signals that stop a run cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Options that do not change a scene's outputs (they are left out of its key).
# ``scales`` joins the key only when set (below), so earlier runs' keys and journals stay as they were.
_NOT_IN_KEY = frozenset(
    {"readers", "queue_depth", "streams", "intra_op_threads", "progress", "profile", "scales"}
)

OnResult = Callable[[SceneResult], None]


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt: nothing catches it by mistake)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.signal_name = signal.Signals(signum).name
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {self.signal_name}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into one :class:`Stopped`; ignore the rest until the block is left.

    A no-op off the main thread (Python delivers signals to the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: object) -> None:
        for sig in STOP_SIGNALS:  # cleanup must not be interrupted again
            signal.signal(sig, signal.SIG_IGN)
        raise Stopped(signum)

    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        # Once stopped, signals stay ignored: the process is on its way out, and a late Ctrl-C must
        # not kill it mid-exit (Python re-raises an unhandled SIGINT as a death by SIGINT).
        if all(signal.getsignal(sig) is handler for sig in STOP_SIGNALS):
            for sig, old in previous.items():
                signal.signal(sig, old if old is not None else signal.SIG_DFL)


def key_parts(deployment: Deployment) -> dict[str, Any]:
    """What besides the input decides a scene's outputs: models (sha256), backends, output options."""
    options = {
        f.name: getattr(deployment.options, f.name)
        for f in fields(DetectOptions)
        if f.name not in _NOT_IN_KEY
    }
    return {
        "models": {role: model_sha256(m.path) for role, m in deployment.models.items()},
        "deployment": deployment.name,
        "backends": list(deployment.backends),
        "roi_threshold": deployment.roi_threshold,
        "options": options,
        "edge_ls": __version__,
        # cascades only, so single-model keys (and the journals holding them) stay as they were
        **(
            {"roi_area": deployment.roi_area, "roi_neighbours": deployment.roi_neighbours}
            if deployment.is_cascade
            else {}
        ),
        # only when set, so the keys of whole-tile cascades (and their journals) stay as they were
        **({"roi_window": deployment.roi_window} if deployment.roi_window else {}),
        **({"scales": list(deployment.options.scales)} if deployment.options.scales != (1.0,) else {}),
    }


def keyed(scenes: Sequence[Scene], deployment: Deployment) -> list[Scene]:
    """The scenes with the deployment folded into their keys (what the journal compares)."""
    parts = key_parts(deployment)
    return [full_key(scene, parts) for scene in scenes]


def run_local(
    scenes: Sequence[Scene],
    deployment: Deployment,
    out_root: Path,
    *,
    journal: Journal,
    on_result: OnResult | None = None,
    force: bool = False,
) -> list[SceneResult]:
    """Run every scene here, the model loaded once (see the module docstring). ``scenes`` carry their
    full keys (:func:`keyed`); ``force`` runs finished scenes again."""
    protect = [scene.path for scene in scenes]
    results: list[SceneResult] = []
    shared: SharedRunner | None = None
    try:
        for scene in scenes:
            out_dir = scene_out_dir(out_root, scene)
            if not force and journal.finished(scene, out_dir):
                result = skipped(scene, out_dir)
            else:
                if (
                    shared is None
                ):  # loaded on the first scene that runs: a rerun of a finished run loads none
                    shared = SharedRunner(make_runner(deployment))
                result = run_scene(scene, deployment, out_dir, shared, journal=journal, protect=protect)
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        if shared is not None:
            shared.close()
    return results


def run_scene(
    scene: Scene,
    deployment: Deployment,
    out_dir: Path,
    shared: SharedRunner,
    *,
    journal: Journal,
    protect: Sequence[Path] = (),
) -> SceneResult:
    """One scene through :func:`edge_ls.pipeline.detect` on the shared runner, journalled."""
    from edge_ls.pipeline import detect

    journal.started(scene)
    try:
        report = detect(
            scene.path,
            deployment,
            out_dir,
            runner_factory=shared.lend,
            protect=protect,
            scene_id=scene.name or scene.path.stem,
            resume_key=scene.key,
        )
    except EdgeLSError as exc:
        error = first_line(exc)
        journal.failed(scene, error, exc.exit_code)
        return SceneResult(
            scene, "failed", out_dir, error=error, exit_code=exc.exit_code, extra={"exception": exc}
        )
    except Stopped as exc:
        journal.interrupted(scene, exc.signal_name)
        raise
    files = checksums(out_dir, report["outputs"])
    journal.done(scene, out_dir, files)
    # The committed report.json (with output_stats), as a skipped scene gives it too.
    return SceneResult(scene, "done", out_dir, report=committed_report(out_dir) or report.as_dict())


def skipped(scene: Scene, out_dir: Path) -> SceneResult:
    """A finished scene kept from an earlier run: its committed report."""
    return SceneResult(scene, "skipped", out_dir, report=committed_report(out_dir))


def committed_report(out_dir: Path) -> dict[str, Any] | None:
    """The committed ``report.json`` (with ``outputs`` and ``output_stats``), or None when absent."""
    try:
        return json.loads((out_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def exit_code(results: Sequence[SceneResult]) -> int:
    """The first failing scene's exit code (input order), else 0."""
    return next((r.exit_code for r in results if r.status == "failed"), 0)


def counts(results: Sequence[SceneResult]) -> dict[str, int]:
    out = {"scenes": len(results), "done": 0, "skipped": 0, "failed": 0}
    for r in results:
        out[r.status] += 1
    return out


def describe(result: SceneResult) -> dict[str, Any]:
    """One scene of the run summary (``--json``'s ``scenes``, one ``--jsonl`` line)."""
    return {
        "name": result.scene.name,
        "input": str(result.scene.path),
        "origin": result.scene.origin,
        "status": result.status,
        "out_dir": str(result.out_dir),
        "exit_code": result.exit_code,
        "error": result.error,
        "report": result.report,
    }
