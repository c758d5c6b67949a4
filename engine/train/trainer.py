"""Ray Train wiring: one `TorchTrainer` run of a worker loop, its result collected.

ScalingConfig(num_workers, use_gpu, resources per worker) from config: gloo on CPU workers,
nccl on GPUs; FailureConfig(max_failures) restarts the worker group from the last reported
checkpoint; every run's checkpoints go under `<out_dir>/ray/<run name>`, or straight to the store
when out_dir is an object store's mirror (engine/staging.py), so that workers on any node of a
cluster write them where the driver reads them; such workers first bring the inputs the driver
mirrored to their own node."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Callable

from engine.raycluster import own_errors_surface
from engine.staging import pull_on_this_node, ray_storage_path
from engine.store_mirror import store_uri
from engine.train.config import ScalingSection

log = logging.getLogger("quarry.train")


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest checkpoint folder under `<out_dir>/ray` (for `resume_from=latest`), by the times
    of its files: a mirror pulled from the store keeps those, while a folder's own time there is
    when the pull filled it. Ray names a run's checkpoints by time, which breaks a tie."""
    def written(folder: Path) -> tuple[int, str]:
        return max((f.stat().st_mtime_ns for f in folder.iterdir() if f.is_file()), default=0), folder.name

    return max((p for p in (Path(out_dir) / "ray").glob("*/checkpoint_*") if p.is_dir()), key=written, default=None)


def run_torch_trainer(loop: Callable, loop_config: dict, scaling: ScalingSection, max_failures: int, out_dir: Path,
                      run_name: str, collect: dict[str, str], inputs: dict[str, Path | str | None]) -> dict:
    """Fit `loop` on Ray Train; copy the files named in `collect` ({name in the checkpoint:
    target path}) out of the final checkpoint; return its history and the final metrics.
    `inputs` ({config key: path}) are what the workers read: those from the store are brought
    to a worker's node before `loop` starts."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    storage = Path(out_dir).resolve() / "ray"
    trainer = TorchTrainer(
        after_pulling(loop, inputs),
        train_loop_config=loop_config,
        scaling_config=scaling.ray_scaling_config(),
        run_config=RunConfig(name=run_name, storage_path=ray_storage_path(storage),
                             failure_config=FailureConfig(max_failures=max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)),
    )
    started = time.perf_counter()
    with own_errors_surface():
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
            "checkpoint": store_uri(storage / run_name / Path(result.checkpoint.path).name) or str(result.checkpoint.path)}


def after_pulling(loop: Callable, inputs: dict[str, Path | str | None]) -> Callable:
    """`loop`, run on a worker once the inputs the driver mirrored from the store are on its node
    (the worker's mirror root is the driver's: inherited by a local Ray, in a cluster job's runtime env)."""
    def loop_on_any_node(config: dict) -> None:
        pull_on_this_node(inputs)
        loop(config)

    return loop_on_any_node
