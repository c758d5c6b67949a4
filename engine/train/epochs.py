"""What every Quarry training loop does around its epochs on Ray Train: restore from the
last checkpoint (after a worker failure) or from `resume_from`, and after each epoch report
the metrics with a checkpoint from rank 0, which all ranks then agree whether to stop on."""

from __future__ import annotations

import json
import math
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch


def new_state() -> dict:
    return {"epoch": 0, "best_fitness": -math.inf, "bad_epochs": 0, "best_epoch": None, "history": []}


def restore(loop_config: dict, device) -> tuple[dict | None, bytes | None]:
    """(saved states, the best model file's bytes) from Ray Train's checkpoint (a restarted
    worker group) or from `resume_from` (a stopped run); (None, None) for a fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    resume_dir = loop_config.get("resume_from")
    if checkpoint is None and not resume_dir:
        return None, None
    with (checkpoint.as_directory() if checkpoint is not None else nullcontext(resume_dir)) as folder:
        saved = torch.load(Path(folder) / "state.pt", map_location=device, weights_only=False)
        best = Path(folder) / "best_model"
        return saved, (best.read_bytes() if best.is_file() else None)


def log_mlflow(mlflow_cfg: dict | None, metrics: dict, step: int) -> None:
    """Rank 0's per-epoch metrics into the MLflow run the driver opened."""
    if not mlflow_cfg:
        return
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    stamp = int(time.time() * 1000)
    MlflowClient(mlflow_cfg["tracking_uri"]).log_batch(
        mlflow_cfg["run_id"], metrics=[Metric(k, float(v), stamp, step) for k, v in metrics.items()
                                       if isinstance(v, (int, float)) and not isinstance(v, bool)])


def end_epoch(state: dict, metrics: dict, fitness: float | None, rank: int, world: int, patience: int,
              states: dict, best_model: bytes | None, save_best, mlflow_cfg: dict | None) -> tuple[bool, bytes | None]:
    """Record the epoch (rank 0: `fitness` decides the best model, written by `save_best(path)`),
    report metrics and a checkpoint to Ray Train, and return (stop, best model bytes)."""
    import ray.train

    stop = torch.zeros(1)
    with tempfile.TemporaryDirectory() as tmp:
        if rank == 0:
            metrics["fitness"] = fitness
            if fitness > state["best_fitness"]:
                state.update(best_fitness=fitness, bad_epochs=0, best_epoch=metrics["epoch"])
                best_model = save_best(Path(tmp) / "best_model").read_bytes()
            else:
                state["bad_epochs"] += 1
            state["epoch"] = metrics["epoch"]
            state["history"].append({k: round(v, 6) if isinstance(v, float) else v for k, v in metrics.items()})
            stop[0] = float(state["bad_epochs"] >= patience)
            torch.save({**states, "state": state}, Path(tmp) / "state.pt")
            (Path(tmp) / "best_model").write_bytes(best_model)
            (Path(tmp) / "history.json").write_text(json.dumps(state["history"], indent=1))
            log_mlflow(mlflow_cfg, metrics, metrics["epoch"])
        if world > 1:  # rank 0 decided; every rank stops together
            torch.distributed.broadcast(stop, src=0)
        report = dict(metrics) if rank == 0 else {"epoch": metrics["epoch"]}
        ray.train.report(report, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)
    return bool(stop.item()), best_model
