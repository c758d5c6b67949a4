"""`quarry tune`: Ray Tune over the fine-tuning knobs (FP penalty, sampling weights, lr, ...).

Search: random or Optuna (TPE); scheduler: ASHA on the per-epoch objective (or FIFO); each trial
fits a TorchTrainer inside (engine/tune/trial.py) and is an MLflow child run of one parent
run. The best trial's best model is registered as a new version with the alias `challenger`.
An interrupted search in the same out_dir is restored and continued (`resume`)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

from engine.config import ConfigError, config_hash
from engine.errors import Interrupted
from engine.raycluster import own_error, own_errors_surface, ray_session
from engine.staging import empty_folder, ray_storage_path, refresh_from_store
from engine.storage import atomic_write_json
from engine.tracking import REGISTRY_STORE_DIR, mlflow_run, resolve_tracking_uri
from engine.train.run import check_inputs, dataset_hash, with_absolute_paths
from engine.train.trainer import latest_checkpoint
from engine.tune.config import TuneConfig, train_values
from engine.tune.trial import close_child_runs, tune_trial

log = logging.getLogger("quarry.tune")
EXPERIMENT = "search"


def _space(cfg: TuneConfig) -> dict:
    from ray import tune

    make = {"uniform": lambda p: tune.uniform(p.low, p.high), "loguniform": lambda p: tune.loguniform(p.low, p.high),
            "randint": lambda p: tune.randint(int(p.low), int(p.high)), "choice": lambda p: tune.choice(p.values)}
    return {p.key: make[p.kind](p) for p in cfg.space}


def _tuner(cfg: TuneConfig, trainable, storage: str):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    obj = cfg.train.objective
    scheduler = (ASHAScheduler(time_attr="epoch", max_t=cfg.train.detect.epochs, grace_period=cfg.grace_period_epochs,
                               reduction_factor=cfg.reduction_factor) if cfg.scheduler == "asha" else FIFOScheduler())
    start = [train_values(cfg)] if cfg.start_from_train else None
    if cfg.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        search = OptunaSearch(points_to_evaluate=start, seed=cfg.seed)
    else:
        from ray.tune.search.basic_variant import BasicVariantGenerator

        search = BasicVariantGenerator(points_to_evaluate=start, random_state=cfg.seed,
                                       max_concurrent=cfg.max_concurrent_trials)
    return tune.Tuner(
        trainable, param_space=_space(cfg),
        tune_config=tune.TuneConfig(metric="objective", mode=obj.mode, num_samples=cfg.num_samples, scheduler=scheduler,
                                    search_alg=search, max_concurrent_trials=cfg.max_concurrent_trials),
        # a trial whose actor dies is started again; it continues from its own last Train checkpoint
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=storage, verbose=1,
                                  failure_config=tune.FailureConfig(max_failures=cfg.train.max_failures)),
    )


def search_hash(cfg: TuneConfig) -> str:
    """What makes a search in out_dir the same search: its config (whether to resume it is not
    part of it) and the content of the set it trains on."""
    return config_hash(cfg.model_copy(update={"resume": True})) + "-" + dataset_hash(cfg.train.data)


def stored_search(out_dir: Path) -> dict:
    """What a search in `out_dir` recorded: its config_hash and parent_run_id ({} when none)."""
    state = Path(out_dir) / "search.json"
    return json.loads(state.read_text()) if state.is_file() else {}


def stored_search_hash(out_dir: Path) -> str | None:
    return stored_search(out_dir).get("config_hash")


def run_tuning(cfg: TuneConfig) -> dict:
    from ray import tune

    check_inputs(cfg.train, "train.")
    out = Path(cfg.out_dir).resolve()
    storage = out / "ray"
    # an out_dir in the store: Tune and the trials' Ray Train runs write there straight from any node
    tune_storage = ray_storage_path(storage)
    experiment = f"{tune_storage}/{EXPERIMENT}"
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri, REGISTRY_STORE_DIR) if cfg.tracking.enabled else None
    started = time.perf_counter()
    resumed = cfg.resume and tune.Tuner.can_restore(experiment)
    state = stored_search(out) if resumed else {}
    digest = search_hash(cfg)
    if resumed and state.get("config_hash") not in (None, digest):
        raise ConfigError(f"out_dir = {str(cfg.out_dir)!r} holds a search made with another config or set: continue it "
                          f"with the same ones, or start afresh with resume=false or another out_dir")
    parent_id = state.get("parent_run_id")
    if uri and parent_id is None:
        with mlflow_run(uri, cfg.tracking.experiment, f"tune-{time.strftime('%Y%m%d-%H%M%S')}", cfg.model_dump(mode="json"),
                        {"quarry.job": "tune", "quarry.config_hash": digest}) as run:
            parent_id = run.info.run_id
    atomic_write_json(out / "search.json", {"config_hash": digest, "parent_run_id": parent_id})
    mlflow_cfg = {"tracking_uri": uri, "parent_run_id": parent_id} if uri else None
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, base=with_absolute_paths(cfg.train).model_dump(mode="json"), out_dir=str(out), mlflow_cfg=mlflow_cfg,
                             max_failures=cfg.train.max_failures),
        {"cpu": cfg.trial_cpus})
    try:
        with ray_session(cfg.ray, dashboard=True), own_errors_surface():
            cfg.train.scaling.check_fits(cfg.ray, "train.", ("trial_cpus", cfg.trial_cpus))
            if resumed:
                log.info("resuming the search in %s", experiment)
                tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_unfinished=True, resume_errored=True)
            else:
                empty_folder(storage / EXPERIMENT)
                tuner = _tuner(cfg, trainable, tune_storage)
            grid = tuner.fit()
    finally:  # the trials' checkpoints, read below, and what a rerun resumes from
        for folder in (storage, out / "trials"):
            refresh_from_store(folder)
    if uri:
        close_child_runs(uri, parent_id)
    obj = cfg.train.objective
    trials = []
    for result in grid:
        trial = result.metrics.get("trial_id", Path(result.path).name)
        # the trial's own checkpoint holds every epoch; Tune's results restart with a restarted trial
        objectives = [h["objective"] for h in _trial_history(out, trial) if h.get("objective") is not None]
        best = (min if obj.mode == "min" else max)(objectives) if objectives else None
        trials.append({"trial": trial, "config": result.config, "epochs": len(objectives),
                       "best_objective": None if best is None else float(best), "error": str(result.error or "")})
    done = [t for t in trials if t["best_objective"] is not None]
    unfinished = cfg.num_samples - grid.num_terminated - grid.num_errors
    if unfinished > 0:  # stopped (Ctrl-C, a lost driver): nothing is registered from half a search
        raise Interrupted(f"the search stopped with {unfinished} of {cfg.num_samples} trials unfinished; "
                          f"the same command resumes it from {out}")
    if not done:
        errors = [t["error"] for t in trials if t["error"]]
        own = next((e for e in map(own_error, errors) if e is not None), None)
        if own is not None:  # every trial failed on a missing input or an unloadable model: its one line
            raise own
        raise RuntimeError(f"no trial reported an objective ({'errors: ' + '; '.join(errors) if errors else 'interrupted?'});"
                           f" the same command resumes the search in {out}")
    best_trial = (min if obj.mode == "min" else max)(done, key=lambda t: t["best_objective"])
    best_model = _best_model(out, best_trial["trial"])
    summary = {"out_dir": str(out), "resumed": resumed, "trials": trials, "best": best_trial,
               "best_model": str(best_model), "seconds": round(time.perf_counter() - started, 1), "tracking_uri": uri}
    if uri:
        summary["registered"] = _register(cfg, uri, parent_id, best_trial, best_model)
    atomic_write_json(out / "summary.json", summary)
    return summary


def _register(cfg: TuneConfig, uri: str, parent_id: str, best_trial: dict, best_model: Path) -> dict:
    """Register the best trial's model (once per search: a resumed search finds its version) and
    point the alias at it."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from engine.registry.models import log_and_register
    from engine.tracking import set_tracking_uri

    set_tracking_uri(uri)
    client = MlflowClient(uri)
    query = f"name = '{cfg.model_name}' and tags.`quarry.tune_run` = '{parent_id}'"
    known = [v for v in _search_versions(client, query) if v.tags.get("quarry.best_trial") == best_trial["trial"]]
    if known:
        registered = {"name": cfg.model_name, "version": int(known[0].version), "model_uri": known[0].source}
    else:
        with mlflow.start_run(run_id=parent_id):
            mlflow.log_params({f"best.{k}": v for k, v in best_trial["config"].items()})
            mlflow.log_metric("best_objective", best_trial["best_objective"])
        registered = log_and_register(parent_id, uri, "detector", best_model, cfg.model_name,
                                      {"imgsz": cfg.train.detect.imgsz, "conf": cfg.train.detect.conf_threshold},
                                      {"quarry.job": "tune", "quarry.tune_run": parent_id, "quarry.best_trial": best_trial["trial"],
                                       "quarry.best_objective": best_trial["best_objective"],
                                       **{f"quarry.param.{k}": v for k, v in best_trial["config"].items()}})
    client.set_registered_model_alias(cfg.model_name, cfg.alias, registered["version"])
    return {**registered, "alias": cfg.alias}


def _search_versions(client, query: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return list(client.search_model_versions(query))
    except MlflowException:  # no such registered model yet
        return []


def _trial_history(out: Path, trial: str) -> list[dict]:
    """The epochs of a trial, from its newest Train checkpoint ([] before its first)."""
    folder = latest_checkpoint(out / "trials" / trial)
    return json.loads((folder / "history.json").read_text()) if folder else []


def _best_model(out: Path, trial: str) -> Path:
    """The best model of a trial: its latest checkpoint's `best_model` file, copied out."""
    folder = latest_checkpoint(out / "trials" / trial)
    if folder is None:
        raise RuntimeError(f"trial {trial} left no checkpoint")
    target = out / "best.pt"
    shutil.copyfile(folder / "best_model", target)
    return target
