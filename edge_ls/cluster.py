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
import pickle
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_ls.errors import ConfigError, EdgeLSError, MissingExtraError, first_line
from edge_ls.scenes import Scene, SceneResult

#: CPUs each actor reserves by default: two single-threaded inference streams, the local run on 2 cores.
CPUS_PER_ACTOR = 2
#: Tries per scene when its actor dies under it (the first run included).
MAX_ATTEMPTS = 3
#: Restarts Ray itself gives an actor that dies between scenes.
MAX_RESTARTS = 3
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


def scene_out_dir(scenes: Sequence[Scene], scene: Scene, out_root: Path) -> Path:
    """Where a scene's set goes: ``out_root/<name>``, or ``out_root`` itself for a single scene (as the
    local path does)."""
    return Path(out_root) if len(scenes) == 1 else Path(out_root) / scene.name


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

    def run(self, scene: Scene, out_dir: str) -> SceneResult:
        """Run one scene into ``out_dir``; never raises (a failure is a ``failed`` result)."""
        from edge_ls.pipeline import detect

        target = Path(out_dir)
        try:
            if self._shared is None:
                self._load()
            factory = self._shared.lend
            dies, marker = self._dies_on(scene)
            if dies:
                factory = _die_after_first_batch(self._shared, marker)
            report = detect(scene.path, self._deployment, target, runner_factory=factory)
        except Exception as exc:  # every failure becomes this scene's result
            return failed(scene, target, exc)
        return SceneResult(scene, "done", target, report=report.as_dict())

    def close(self) -> None:
        """Release the model (after the last scene)."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def _dies_on(self, scene: Scene) -> tuple[bool, Path | None]:
        """Whether the test hook kills this try of ``scene``, and the marker file that records it."""
        for entry in (self.kill_hook or "").split(","):
            name, _, marker = entry.partition(":")
            if name == scene.name:
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
) -> list[SceneResult]:
    """Run ``scenes`` on Ray actors; return one result per scene, in input order.

    ``address`` None: a local cluster on this machine's CPUs (a running one, e.g. started by the
    caller, is used as it is); else the cluster to connect to (``auto``, ``ray://host:10001``). Ray is
    shut down at the end only if this call started it. ``on_result`` is called on the driver as each
    scene ends, in completion order: that is where the run journal records finished scenes
    (``journal`` is accepted for the CLI's signature; a scene interrupted on an actor is rerun whole,
    so no row-band progress is journalled from actors).
    """
    del journal  # recorded through on_result on the driver (see the docstring)
    ray = import_ray()
    from edge_ls.deployment import deploy

    if not scenes:
        return []
    # Fail fast, on the driver, with the same one-line errors as a local run.
    deployment = deploy(**deploy_kwargs)
    if str(deploy_kwargs.get("profile")) == "auto" and deployment.profile is not None:
        # One tier for the whole run: what the driver picked, not what each node would pick.
        deploy_kwargs = {**deploy_kwargs, "profile": deployment.profile.name}
    try:
        pickle.dumps(deploy_kwargs)
    except Exception as exc:  # a caller's bug, not the user's: say what must be plain
        raise TypeError(f"run_ray: deploy_kwargs must be picklable ({first_line(exc)})") from None
    started = _connect(ray, address)
    try:
        return _schedule(ray, list(scenes), deploy_kwargs, Path(out_root), actors, on_result)
    finally:
        if started:
            ray.shutdown()


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
    ray: Any,
    scenes: list[Scene],
    deploy_kwargs: dict[str, Any],
    out_root: Path,
    actors: int | None,
    on_result: Callable[[SceneResult], None] | None,
) -> list[SceneResult]:
    """One scene in flight per actor; results handed to ``on_result`` as they come."""
    from ray.exceptions import RayActorError

    count, cpus, gpus = plan_actors(ray.cluster_resources(), len(scenes), actors)
    kwargs = thread_settings(deploy_kwargs, cpus, gpus)
    kill_hook = os.environ.get(KILL_HOOK_ENV)
    remote = ray.remote(SceneWorker).options(
        num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=0
    )

    def fresh() -> Any:
        return remote.remote(kwargs, kill_hook, os.getcwd())

    pool = [fresh() for _ in range(count)]
    pending: deque[int] = deque(range(len(scenes)))
    attempts = [0] * len(scenes)
    results: list[SceneResult | None] = [None] * len(scenes)
    in_flight: dict[Any, tuple[int, int]] = {}

    def submit(slot: int) -> None:
        if pending:
            i = pending.popleft()
            attempts[i] += 1
            out_dir = scene_out_dir(scenes, scenes[i], out_root)
            in_flight[pool[slot].run.remote(scenes[i], str(out_dir))] = (slot, i)

    for slot in range(count):
        submit(slot)
    try:
        while in_flight:
            (ref,), _ = ray.wait(list(in_flight), num_returns=1)
            slot, i = in_flight.pop(ref)
            scene = scenes[i]
            out_dir = scene_out_dir(scenes, scene, out_root)
            try:
                result = ray.get(ref)
            except RayActorError as exc:
                # Kill it for good before anyone else writes this scene: one writer per scene.
                ray.kill(pool[slot], no_restart=True)
                pool[slot] = fresh()
                if attempts[i] < MAX_ATTEMPTS:
                    why = first_line(exc)
                    log.warning("%s: its Ray actor died (%s); retrying on a fresh actor", scene.name, why)
                    pending.appendleft(i)
                    submit(slot)
                    continue
                result = SceneResult(
                    scene,
                    "failed",
                    out_dir,
                    error=f"{scene.name}: the Ray actor running it died on each of {attempts[i]} tries "
                    f"(last: {first_line(exc)})",
                    exit_code=1,
                )
            except Exception as exc:  # e.g. a result that did not unpickle
                result = failed(scene, out_dir, exc)
            results[i] = result
            if on_result is not None:
                on_result(result)
            submit(slot)
    finally:
        for actor in pool:
            ray.kill(actor, no_restart=True)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]
