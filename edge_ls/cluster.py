"""Many scenes on a Ray cluster (``edge-ls detect --ray``): the local multi-scene run, spread over actors.

Why actors and not Ray Data: what costs here is the model load and the per-scene pipeline, not moving
rows between stages. An actor loads its model (or engine) once and keeps it for every scene it is
given, as the local loop does (:class:`~edge_ls.backends.shared.SharedRunner`); a whole scene goes to
one actor, so exactly one process writes each output folder; and the CPU stages Ray Data would add
(windowed reads, blending, COG conversion, vectorizing) already run on threads inside each actor's
:func:`edge_ls.pipeline.detect`, which streams a scene of any size in bounded memory. Ray Data would
split a scene into row blocks whose writes then have to be put back together by one writer anyway.

Sizing: each actor reserves :data:`CPUS_PER_ACTOR` CPUs and runs its scene with
``streams = min(2, cpus)`` inference streams of ``cpus // streams`` intra-op threads each (unless the
caller set them), which is what the local run uses on a 2-core ground station; the default actor
count is the cluster's CPUs // CPUs per actor (at most one per scene). On a cluster with GPUs there is
one actor per GPU (``num_gpus=1``), sharing the CPUs evenly.

Failures: a scene that raises is failed alone (its error's first line and exit code, as the CLI would
print it). An actor that dies (SIGKILL, OOM, a lost node) is killed for good and replaced by a fresh
actor, and its scene is retried there, :data:`MAX_ATTEMPTS` tries in all; the retry rewrites the
scene's whole set, and since :class:`~edge_ls.io.outputs.OutputSet` commits a set only when complete
(a dead writer's temporary folder is removed by the next writer), no partial set is ever visible.
Actors also restart on their own (``max_restarts``) if they die between scenes.

This module is runtime: Ray is imported inside the functions that need it, so ``edge_ls`` imports
and runs without the ``cluster`` extra.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_ls.errors import ConfigError, EdgeLSError, MissingExtraError, first_line
from edge_ls.runs import committed_report
from edge_ls.scenes import Scene, SceneResult, scene_out_dir

#: CPUs each actor reserves by default: two single-threaded inference streams, the local run on 2 cores.
CPUS_PER_ACTOR = 2
#: Tries per scene when its actor dies under it (the first run included).
MAX_ATTEMPTS = 3
#: Restarts Ray itself gives an actor that dies between scenes.
MAX_RESTARTS = 3
#: How long an interrupted run waits for its killed actors' temporary folders to be removable.
PARTIALS_WAIT_S = 5.0
#: Test-only hook, read on the driver and handed to the actors: ``<scene>:<marker file>[,...]`` makes
#: the actor running that scene SIGKILL itself after its first batch, once (the marker file records
#: that it did, so the retry runs normally); ``<scene>:`` (no marker) kills it on every try.
KILL_HOOK_ENV = "EDGE_LS_TEST_KILL_SCENE"

log = logging.getLogger(__name__)


def import_ray() -> Any:
    """The ``ray`` module, or the one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise MissingExtraError("ray", "cluster", "--ray") from None
    return ray


_PLAIN = (str, int, float, bool, type(None), Path)


def _not_plain(value: Any, where: str = "deploy_kwargs") -> str | None:
    """Where ``value`` holds something other than plain data (str, numbers, paths, and lists, tuples
    and str-keyed dicts of them), which is all an actor needs to rebuild its deployment."""
    if isinstance(value, _PLAIN):
        return None
    if isinstance(value, (list, tuple)):
        return next((e for i, v in enumerate(value) if (e := _not_plain(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, v in value.items():
            if not isinstance(key, str):
                return f"{where} has a non-string key {key!r}"
            found = _not_plain(v, f"{where}[{key!r}]")
            if found:
                return found
        return None
    return f"{where} is a {type(value).__name__}"


def failed(scene: Scene, out_dir: Path, exc: BaseException) -> SceneResult:
    """The result of a scene whose run raised: one line and the exit code of the error's class."""
    code = exc.exit_code if isinstance(exc, EdgeLSError) else 1
    return SceneResult(scene, "failed", out_dir, error=first_line(exc), exit_code=code)


class SceneWorker:
    """What one Ray actor runs: a deployment and its runner, loaded once, lent to each scene in turn.

    The deployment is rebuilt here from ``deploy_kwargs`` (the keyword arguments of
    :func:`edge_ls.deployment.deploy`), so only plain values cross the process boundary.
    """

    def __init__(
        self, deploy_kwargs: dict[str, Any], kill_hook: str | None = None, cwd: str | None = None
    ) -> None:
        if cwd and Path(cwd).is_dir():
            os.chdir(cwd)  # relative scene and output paths mean what they meant to the driver
        self.deploy_kwargs = dict(deploy_kwargs)
        self.kill_hook = kill_hook
        self._deployment: Any = None
        self._shared: Any = None

    def _load(self) -> None:
        """Deploy and build the runner on the first scene (an error then fails that scene, not the actor)."""
        from edge_ls.backends.select import make_runner
        from edge_ls.backends.shared import SharedRunner
        from edge_ls.deployment import deploy

        deployment = deploy(**self.deploy_kwargs)
        self._shared = SharedRunner(make_runner(deployment))
        self._deployment = deployment

    def run(self, scene: Scene, out_dir: str, protect: Sequence[str] = ()) -> SceneResult:
        """Run one scene into ``out_dir``; never raises (a failure is a ``failed`` result).
        ``protect``: every input of the run (a commit must never replace one), as the local loop."""
        from edge_ls.manifest import sha256_file
        from edge_ls.pipeline import detect

        target = Path(out_dir)
        try:
            if self._shared is None:
                self._load()
            factory = self._shared.lend
            dies, marker = self._dies_on(scene)
            if dies:
                factory = _die_after_first_batch(self._shared, marker)
            report = detect(
                scene.path,
                self._deployment,
                target,
                runner_factory=factory,
                protect=[Path(p) for p in protect],
                scene_id=scene.name or scene.path.stem,
                resume_key=scene.key,
            )
            committed = committed_report(target) or report.as_dict()
            files = {name: sha256_file(target / name) for name in committed.get("outputs", [])}
        except Exception as exc:  # every failure becomes this scene's result
            return failed(scene, target, exc)
        # ``files``: the sha256 of each committed file, read here (beside the disk), for the journal.
        return SceneResult(scene, "done", target, report=committed, extra={"files": files})

    def close(self) -> None:
        """Release the model (after the last scene)."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _dies_on(self, scene: Scene) -> tuple[bool, Path | None]:
        """Whether the test hook kills this try of ``scene``, and the marker file that records it."""
        for entry in (self.kill_hook or "").split(","):
            name, _, marker = entry.partition(":")
            if name and name == scene.name:
                return (not marker or not Path(marker).exists()), Path(marker) if marker else None
        return False, None


def _die_after_first_batch(shared: Any, marker: Path | None) -> Callable[..., Any]:
    """Test hook (:data:`KILL_HOOK_ENV`): a runner that SIGKILLs its process once a scene is mid-stream."""
    from edge_ls.backends.shared import SharedRunner

    class Dying(SharedRunner):
        def infer_tiles(self, batch: Any, tiles: Any) -> Any:
            out = shared.infer_tiles(batch, tiles)
            if marker is not None:
                marker.write_text(f"killed pid {os.getpid()}\n", encoding="utf-8")
            os.kill(os.getpid(), signal.SIGKILL)
            return out

    dying = Dying(shared.inner)
    return lambda *_: dying


def plan_actors(resources: dict[str, float], scenes: int, actors: int | None) -> tuple[int, float, int]:
    """``(actors, cpus each, gpus each)`` for a cluster with ``resources`` (``ray.cluster_resources()``).

    Default: one actor per GPU when there are GPUs, else CPUs // :data:`CPUS_PER_ACTOR`; never more
    actors than scenes. ``actors`` given: that many, sharing the CPUs (fractions allowed, so more actors
    than CPUs still schedule) and, with GPUs, one GPU each while they last.
    """
    cpus = max(1.0, float(resources.get("CPU", 1.0)))
    gpus = int(resources.get("GPU", 0))
    if actors is not None and actors < 1:
        raise ConfigError(f"--actors {actors}: need at least 1")
    if actors is None:
        actors = gpus if gpus else max(1, int(cpus // CPUS_PER_ACTOR))
    actors = max(1, min(actors, scenes))
    per_gpu = 1 if gpus >= actors else 0
    per_cpu = min(float(CPUS_PER_ACTOR), cpus / actors) if not gpus else cpus / actors
    return actors, per_cpu, per_gpu


def thread_settings(deploy_kwargs: dict[str, Any], cpus: float, gpus: int) -> dict[str, Any]:
    """Streams and intra-op threads for an actor with ``cpus`` CPUs, unless the caller set them."""
    out = dict(deploy_kwargs)
    whole = max(1, int(cpus))
    if out.get("streams") is None and not gpus:
        out["streams"] = min(2, whole)
    if out.get("intra_op_threads") is None:
        out["intra_op_threads"] = max(1, whole // (out.get("streams") or 1))
    return out


def run_ray(
    scenes: Sequence[Scene],
    deploy_kwargs: dict,
    out_root: Path,
    *,
    address: str | None = None,
    actors: int | None = None,
    journal: object | None = None,
    on_result: Callable[[SceneResult], None] | None = None,
    force: bool = False,
) -> list[SceneResult]:
    """Run ``scenes`` on Ray actors; return one result per scene, in input order.

    ``address`` None: a local cluster on this machine's CPUs (a running one, e.g. started by the
    caller, is used as it is); else the cluster to connect to (``auto``, ``ray://host:10001``). Ray is
    shut down at the end only if this call started it. ``on_result`` is called on the driver as each
    scene ends, in completion order. ``journal`` (:class:`edge_ls.journal.Journal`, used through its
    ``finished / started / done / failed / interrupted`` methods) is written on the driver only: a
    scene it says is finished is skipped without starting Ray (unless ``force``), and a scene
    interrupted on an actor runs again whole.
    """
    ray = import_ray()
    from edge_ls.deployment import deploy

    if not scenes:
        return []
    # Fail fast, on the driver, with the same one-line errors as a local run.
    deployment = deploy(**deploy_kwargs)
    if str(deploy_kwargs.get("profile")) == "auto" and deployment.profile is not None:
        # One tier for the whole run: what the driver picked, not what each node would pick.
        deploy_kwargs = {**deploy_kwargs, "profile": deployment.profile.name}
    odd = _not_plain(deploy_kwargs)
    if odd:  # a caller's bug, not the user's: only plain values may cross to the actors
        raise TypeError(f"run_ray: deploy_kwargs must hold plain values; {odd}")
    run = _Run(list(scenes), Path(out_root), journal, on_result)
    todo = [i for i, scene in enumerate(run.scenes) if force or not run.skip(i)]
    if not todo:
        return run.results()
    started = _connect(ray, address)
    try:
        _schedule(ray, run, todo, deploy_kwargs, actors)
    finally:
        if started:
            ray.shutdown()
    return run.results()


class _Run:
    """The driver's side of a run: results by input position, the journal, the callback."""

    def __init__(
        self,
        scenes: list[Scene],
        out_root: Path,
        journal: Any,
        on_result: Callable[[SceneResult], None] | None,
    ) -> None:
        self.scenes, self.out_root, self.journal, self.on_result = scenes, out_root, journal, on_result
        self._results: list[SceneResult | None] = [None] * len(scenes)

    def out_dir(self, i: int) -> Path:
        return scene_out_dir(self.out_root, self.scenes[i])

    def skip(self, i: int) -> bool:
        """Record scene ``i`` as skipped when the journal says its committed set can be kept."""
        scene, out_dir = self.scenes[i], self.out_dir(i)
        if self.journal is None or not self.journal.finished(scene, out_dir):
            return False
        self.end(i, SceneResult(scene, "skipped", out_dir, report=committed_report(out_dir)))
        return True

    def start(self, i: int) -> None:
        if self.journal is not None:
            self.journal.started(self.scenes[i])

    def end(self, i: int, result: SceneResult) -> None:
        if self.journal is not None and result.status == "done":
            self.journal.done(result.scene, result.out_dir, result.extra.get("files", {}))
        elif self.journal is not None and result.status == "failed":
            self.journal.failed(result.scene, result.error or "", result.exit_code)
        self._results[i] = result
        if self.on_result is not None:
            self.on_result(result)

    def interrupted(self, indexes: list[int], exc: BaseException) -> None:
        """A stop signal (``Stopped``, with its ``signal_name``) while these scenes ran on actors."""
        name = getattr(exc, "signal_name", None)
        if self.journal is not None and name:
            for i in indexes:
                self.journal.interrupted(self.scenes[i], name)

    def results(self) -> list[SceneResult]:
        assert all(r is not None for r in self._results)
        return [r for r in self._results if r is not None]


def start_local(ray: Any, num_cpus: int | None = None) -> None:
    """Start a local cluster on this machine's CPUs, quiet, its workers at the caller's priority.

    Ray runs its workers at ``worker_niceness`` 15 by default, so on a machine shared with anything
    else an actor gets a fraction of the cores the local run gets: on this project's shared 2-core
    machine the same two scenes took 6x longer on one 2-CPU actor than in the local loop
    (``bench/cluster.py``). A local run of edge-ls should compete for the cores as the local loop does.
    """
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        _system_config={"worker_niceness": 0},
    )


def _connect(ray: Any, address: str | None) -> bool:
    """Join or start a cluster; True when this call started (and so must stop) it."""
    if ray.is_initialized():
        return False
    try:
        if address is None:
            start_local(ray)
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(f"cannot start or join {where}: {first_line(exc)}") from None
    return True


def _schedule(
    ray: Any, run: _Run, todo: list[int], deploy_kwargs: dict[str, Any], actors: int | None
) -> None:
    """One scene in flight per actor; each result handed to ``run.end`` as it comes."""
    from ray.exceptions import RayActorError

    count, cpus, gpus = plan_actors(ray.cluster_resources(), len(todo), actors)
    kwargs = thread_settings(deploy_kwargs, cpus, gpus)
    kill_hook = os.environ.get(KILL_HOOK_ENV)
    remote = ray.remote(SceneWorker).options(
        num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=0
    )

    def fresh() -> Any:
        return remote.remote(kwargs, kill_hook, os.getcwd())

    pool = [fresh() for _ in range(count)]
    protect = [str(scene.path) for scene in run.scenes]
    pending: deque[int] = deque(todo)
    attempts = dict.fromkeys(todo, 0)
    in_flight: dict[Any, tuple[int, int]] = {}

    def submit(slot: int) -> None:
        if pending:
            i = pending.popleft()
            if attempts[i] == 0:
                run.start(i)
            attempts[i] += 1
            in_flight[pool[slot].run.remote(run.scenes[i], str(run.out_dir(i)), protect)] = (slot, i)

    try:
        for slot in range(count):
            submit(slot)
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            slot, i = in_flight.pop(ref)
            scene, out_dir = run.scenes[i], run.out_dir(i)
            try:
                result = ray.get(ref)
            except RayActorError as exc:
                # Kill it for good before anyone else writes this scene: one writer per scene.
                ray.kill(pool[slot], no_restart=True)
                pool[slot] = fresh()
                if attempts[i] < MAX_ATTEMPTS:
                    why = first_line(exc)
                    what = scene.name or scene.path.name
                    log.warning("%s: its Ray actor died (%s); retrying on a fresh actor", what, why)
                    pending.appendleft(i)
                    submit(slot)
                    continue
                result = SceneResult(
                    scene,
                    "failed",
                    out_dir,
                    error=f"{scene.name or scene.path.name}: the Ray actor running it died on each of "
                    f"{attempts[i]} tries "
                    f"(last: {first_line(exc)})",
                    exit_code=1,
                )
            except Exception as exc:  # e.g. a result that did not unpickle
                result = failed(scene, out_dir, exc)
            run.end(i, result)
            submit(slot)
    except BaseException as exc:  # a stop signal or an error on the driver: the scenes in flight end here
        run.interrupted([i for _, i in in_flight.values()], exc)
        raise
    finally:
        for actor in pool:
            ray.kill(actor, no_restart=True)
        _remove_partials(run, [i for _, i in in_flight.values()])


def _remove_partials(run: _Run, indexes: list[int]) -> None:
    """The temporary folders of scenes whose actors were just killed (a few seconds for them to go)."""
    from edge_ls.io.outputs import remove_stale_partials

    deadline = time.monotonic() + PARTIALS_WAIT_S
    for i in indexes:
        out_dir = run.out_dir(i)
        while out_dir.is_dir():
            remove_stale_partials(out_dir)
            if not any(out_dir.glob(".edge_ls.*.partial-*")) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
