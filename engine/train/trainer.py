"""Ray Train wiring: one `TorchTrainer` run of a worker loop, its result collected.

ScalingConfig(num_workers, use_gpu, resources per worker) from config: gloo on CPU workers,
nccl on GPUs; FailureConfig(max_failures) restarts the worker group from the last reported
checkpoint; every run's checkpoints go under `<out_dir>/ray/<run name>` (on a cluster, put
out_dir on shared storage or an object store)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

from engine.raycluster import model_errors_surface
from engine.train.config import ScalingSection

log = logging.getLogger("quarry.train")


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint folder under `<out_dir>/ray` (for `resume_from=latest`)."""
    found = sorted((p for p in (Path(out_dir) / "ray").glob("*/checkpoint_*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_torch_trainer(loop: Callable, loop_config: dict, scaling: ScalingSection, max_failures: int, out_dir: Path,
                      run_name: str, collect: dict[str, str]) -> dict:
    """Fit `loop` on Ray Train; copy the files named in `collect` ({name in the checkpoint:
    target path}) out of the final checkpoint; return its history and the final metrics."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    resources = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    trainer = TorchTrainer(
        loop, train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=resources),
        run_config=RunConfig(name=run_name, storage_path=str((Path(out_dir) / "ray").resolve()),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    started = time.perf_counter()
    with model_errors_surface():
        result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise RuntimeError(f"training run {run_name} reported no checkpoint")
    with result.checkpoint.as_directory() as folder:
        for name, target in collect.items():
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(folder) / name, target)
        history = json.loads((Path(folder) / "history.json").read_text())
    return {"history": history, "metrics": dict(result.metrics or {}), "seconds": round(time.perf_counter() - started, 1),
            "checkpoint": str(result.checkpoint.path)}
