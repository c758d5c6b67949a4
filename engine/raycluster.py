"""Starting or joining Ray, once for every job: the configured cluster, `$RAY_ADDRESS` (set
by `ray job submit`), or a new local Ray that the job stops when it is done."""

from __future__ import annotations

import os
import re
import socket
from contextlib import contextmanager
from typing import Iterator

from pydantic import Field, model_validator

from engine.config import ConfigError, Section
from engine.models import ModelError

# Set inside `one_ray_for_all`: the local Ray the first session starts is kept for the next ones.
_shared = {"active": False, "started": False}

# Ray Train settings for a local Ray (one machine), unless the user set them. Its controller
# checks on the workers every 2 s by default, so each run waits up to 2 s at start and at end;
# the preemption watcher (spot instances) is an extra actor per run with nothing to watch on one
# machine. Measured on 2 cores: a 2-worker fit of an empty loop 10.2-12.2 s -> 8.3-9.8 s, a
# 2-epoch tiny `quarry train` 28.9-31.8 s -> 23.4-23.8 s (three and two runs).
LOCAL_TRAIN_ENV = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}

API_SERVER_VAR = "RAY_API_SERVER_ADDRESS"  # where Ray's state API looks first for its dashboard


class RayConfig(Section):
    address: str | None = Field(None, description="cluster address (default: $RAY_ADDRESS, else a new local Ray)")
    num_cpus: int | None = Field(None, ge=1, description="CPUs of a local Ray (None: all)")


def init_ray(cfg: RayConfig, dashboard: bool = False) -> bool:
    """Connect to the configured cluster, $RAY_ADDRESS, or start a local Ray; True if we started it.
    Every worker gets the offline switches (a cluster's through the runtime env). `dashboard`: a
    local Ray with the dashboard (on 127.0.0.1) for jobs that run Ray Train: its placement-group
    cleaner asks the dashboard's state API whether a run's controller still lives, and frees the
    run's CPUs when Tune stops a trial mid-fit (without it they were never freed). Mining starts
    ~0.5 s sooner without it."""
    import ray

    from engine.offline import enable_offline
    from engine.store_mirror import MIRROR_ENV, mirror_root

    if ray.is_initialized():
        return False
    switches = enable_offline()  # set in this process too: a local Ray's workers inherit them
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        # and the driver's mirror of the object store, so that a worker on another node brings
        # an input to the same path (engine/staging.py)
        env = {"env_vars": {**switches, MIRROR_ENV: str(mirror_root().resolve())}}
        ray.init(address=cfg.address, runtime_env=env, log_to_driver=True)
    else:  # "local" ignores a stale ray_current_cluster file left by `ray stop`
        for key, value in LOCAL_TRAIN_ENV.items():  # before ray.init: its workers inherit them
            os.environ.setdefault(key, value)
        # no runtime env: a local Ray's workers inherit this process's environment, offline
        # switches included, and a runtime env costs every worker ~0.8 s of start-up here
        with _workers_find_their_dashboard(dashboard) as port:
            ray.init(address="local", num_cpus=cfg.num_cpus, include_dashboard=dashboard,
                     **({"dashboard_host": "127.0.0.1", "dashboard_port": port} if dashboard else {}))
    return True


@contextmanager
def _workers_find_their_dashboard(dashboard: bool) -> Iterator[int | None]:
    """A free loopback port for a local Ray's dashboard, named to its workers in
    RAY_API_SERVER_ADDRESS while `ray.init` starts them (they inherit the environment).
    Ray's state API otherwise finds its cluster by looking for Ray processes on the machine:
    next to another Ray (a `ray start --head` left up, a second job) it found two ("Found
    multiple active Ray instances"), the placement-group cleaner died with a traceback, and a
    Tune search never got past its first trial."""
    if not dashboard:
        yield None
        return
    with socket.socket() as probe:  # free now; Ray binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    saved = os.environ.get(API_SERVER_VAR)
    os.environ[API_SERVER_VAR] = f"http://127.0.0.1:{port}"
    try:
        yield port
    finally:  # this process may join another cluster later
        os.environ.pop(API_SERVER_VAR) if saved is None else os.environ.__setitem__(API_SERVER_VAR, saved)


@contextmanager
def ray_session(cfg: RayConfig, dashboard: bool = False) -> Iterator[None]:
    """Ray for the duration of a block; a local Ray started here is stopped at its end (inside
    `one_ray_for_all`, at that block's end)."""
    started = init_ray(cfg, dashboard or _shared["active"])
    _shared["started"] |= started and _shared["active"]
    try:
        yield
    finally:
        if started and not _shared["active"]:
            import ray

            ray.shutdown()


@contextmanager
def one_ray_for_all() -> Iterator[None]:
    """One local Ray for several jobs run in one process (the demo's steps): the first
    `ray_session` starts it (with the dashboard, which Ray Train needs), the others join it, and
    it stops when the block ends. Each job starting its own Ray cost a start-up, a shutdown and
    cold workers (torch, Ultralytics and open_clip imported again) every step. Nested blocks
    share the outermost one's Ray."""
    if _shared["active"]:
        yield
        return
    _shared.update(active=True, started=False)
    try:
        yield
    finally:
        started = _shared["started"]
        _shared.update(active=False, started=False)
        if started:
            import ray

            ray.shutdown()


def check_local_ray_fits(cfg: RayConfig, need: dict[str, float], asked: str) -> None:
    """On a local Ray (no `ray.address`, no $RAY_ADDRESS), refuse work whose smallest unit that
    must run at once (one scoring actor, a training run's workers) needs more CPUs or GPUs than
    that Ray has: Ray would wait for them forever. Measured on 2 cores: mining with a GPU per
    actor waited with "No available node types can fulfill resource request", and `quarry train`
    with 4 workers retried its worker group every 60 s. A cluster may grow (its autoscaler), so
    there Ray's own waiting stands. `asked`: the config keys and values that ask, for the error."""
    if cfg.address or os.environ.get("RAY_ADDRESS"):
        return
    import ray

    have = ray.cluster_resources()
    for kind, amount in need.items():
        if amount > have.get(kind, 0.0) + 1e-9:
            where = "no GPU found" if kind == "GPU" else "ray.num_cpus, or the machine's cores"
            plural = "" if amount == 1 else "s"
            raise ConfigError(f"{asked} needs {amount:g} {kind}{plural} at once, and this machine's local Ray has "
                              f"{have.get(kind, 0.0):g} ({where}): it would wait for them forever; ask for less, "
                              f"or run on a cluster (ray.address)")


def check_actor_fits(ray_cfg: RayConfig, pool, keys: str) -> None:
    """One actor of an actor pool (`keys`: its config section, with num_cpus_per_actor and
    num_gpus_per_actor) must fit a local Ray; more than one need not (Ray Data starts what fits)."""
    check_local_ray_fits(ray_cfg, {"CPU": pool.num_cpus_per_actor, "GPU": pool.num_gpus_per_actor},
                         f"{keys}.num_cpus_per_actor = {pool.num_cpus_per_actor:g} with {keys}.num_gpus_per_actor = "
                         f"{pool.num_gpus_per_actor:g} (one actor)")


@contextmanager
def own_errors_surface():
    """A scorer that cannot build its models kills its actor, and a training worker that finds
    an input missing fails its worker group; Ray then raises its own errors around ours.
    Re-raise the ModelError's or ConfigError's one-line message for the user."""
    try:
        yield
    except (ModelError, ConfigError):
        raise
    except Exception as exc:
        text, seen = [], exc
        while seen is not None and len(text) < 20:
            text.append(str(seen))
            seen = seen.__cause__ or seen.__context__
        own = own_error("\n".join(text))
        if own is not None:
            raise own from None
        raise


def own_error(text: str) -> ModelError | ConfigError | None:
    """The first ModelError or ConfigError in the text of Ray's error (a worker's traceback
    inside it), as that error with its one line; None when there is none."""
    found = re.search(r"(ModelError|ConfigError): ([^\n\x1b]+)", text)
    if found is None:
        return None
    return (ModelError if found.group(1) == "ModelError" else ConfigError)(found.group(2).strip())


class ActorPoolConfig(Section):
    """An autoscaling pool of model actors (Ray Data `ActorPoolStrategy`)."""

    min_actors: int = Field(1, ge=1, description="actors the pool keeps")
    max_actors: int = Field(2, ge=1, description="actors the pool may grow to")
    num_gpus_per_actor: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per actor; fractions share a GPU")
    num_cpus_per_actor: float = Field(1.0, gt=0.0, le=64.0)

    @model_validator(mode="after")
    def _check(self):
        if self.min_actors > self.max_actors:
            raise ValueError(f"pool.min_actors ({self.min_actors}) > pool.max_actors ({self.max_actors})")
        return self

    def map_batches_kwargs(self) -> dict:
        """The `map_batches` arguments that place a callable class on this pool."""
        import ray

        return {"compute": ray.data.ActorPoolStrategy(min_size=self.min_actors, max_size=self.max_actors),
                "num_gpus": self.num_gpus_per_actor or None, "num_cpus": self.num_cpus_per_actor}
