"""One Tune trial: the sampled values set into the training config, a `TorchTrainer` fitted
inside the trial (Ray Train V2 with Tune: a function trainable whose Train run reports to Tune
through `TuneReportCallback`), and an MLflow child run under the search's parent run."""

from __future__ import annotations

import copy
import json
from pathlib import Path


def with_values(base: dict, values: dict) -> dict:
    """`base` (a dumped TrainConfig) with each dotted key of `values` set."""
    from engine.config import set_dotted

    data = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(data, key.split("."), value, f"space key {key!r}")
    return data


def tune_trial(values: dict, base: dict, out_dir: str, mlflow_cfg: dict | None, max_failures: int) -> None:
    import ray.tune
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from engine.offline import enable_offline
    from engine.staging import pull_on_this_node, ray_storage_path
    from engine.train.config import TrainConfig
    from engine.train.detect_loop import detect_train_loop
    from engine.train.trainer import after_pulling, latest_checkpoint

    enable_offline()
    context = ray.tune.get_context()
    trial = context.get_trial_id()
    cfg = TrainConfig.model_validate(with_values(base, values))
    cfg.out_dir = Path(out_dir) / "trials" / trial
    child = _child_run(mlflow_cfg, trial, values) if mlflow_cfg else None
    # a restored search restarts its unfinished trials: each continues from its own last checkpoint
    # (with out_dir in the store, brought to this node first)
    pull_on_this_node({}, {"trial": cfg.out_dir})
    found = latest_checkpoint(cfg.out_dir)
    resume_from = str(found) if found else None
    history = json.loads((found / "history.json").read_text()) if found else []
    if history and history[-1]["epoch"] >= cfg.detect.epochs:  # it ended before the search recorded it
        ray.tune.report(history[-1])
        return
    trainer = TorchTrainer(
        after_pulling(detect_train_loop, {"data": cfg.data, "detect.model": cfg.detect.model, "resume_from": resume_from}),
        train_loop_config={"train": cfg.model_dump(mode="json"), "resume_from": resume_from, "variant": None,
                           "mlflow": {"tracking_uri": mlflow_cfg["tracking_uri"], "run_id": child} if child else None},
        scaling_config=cfg.scaling.ray_scaling_config(),
        run_config=RunConfig(name=trial, storage_path=ray_storage_path(cfg.out_dir / "ray"),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2), callbacks=[TuneReportCallback()]),
    )
    trainer.fit()  # the search closes its trials' MLflow runs (ASHA may stop a trial mid-fit)


def _child_run(mlflow_cfg: dict, trial: str, values: dict) -> str:
    """The trial's MLflow run under the search's parent run (the same one when a restored search
    restarts the trial)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_cfg["tracking_uri"])
    parent = client.get_run(mlflow_cfg["parent_run_id"])
    found = client.search_runs([parent.info.experiment_id], max_results=1, filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`quarry.trial` = '{trial}'"))
    if found:
        return found[0].info.run_id
    child = client.create_run(parent.info.experiment_id, run_name=trial, tags={
        "mlflow.parentRunId": parent.info.run_id, "quarry.job": "tune-trial", "quarry.trial": trial}).info.run_id
    for key, value in values.items():
        client.log_param(child, key, value)
    return child


def close_child_runs(tracking_uri: str, parent_run_id: str) -> None:
    """Mark the search's trial runs finished (a trial stopped early never ends its own run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    parent = client.get_run(parent_run_id)
    for run in client.search_runs([parent.info.experiment_id], filter_string=(
            f"tags.`mlflow.parentRunId` = '{parent_run_id}' and attributes.status = 'RUNNING'")):
        client.set_terminated(run.info.run_id)
