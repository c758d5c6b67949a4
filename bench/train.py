"""Training overhead: a step of Quarry's detection loop in a plain torch process against the
same step inside Ray Train with 1 worker (target overhead <= 1.10), and 2 workers against 1.

    python -m bench.train --data runs/demo/dataset --model runs/demo/base/base.pt --steps 40

Same model, data, batch and loss (engine.train.detect_loop.detection_batch_loss, Ultralytics'
loss + the FP penalty), weighted sampler, AdamW. Step time is measured inside the loop over
steps after `--warmup` warm-up steps, so Ray's start-up (reported apart) is not in it.
Throughput counts images per second over all workers. Writes bench/results/train-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from engine.machine import describe_machine

REPO = Path(__file__).resolve().parents[1]


def timed_steps(model, criterion, loader, steps: int, warmup: int, world: int = 1, device=None,
                amp: bool = False) -> list[float]:
    """Train `steps` steps; the wall time of each after `warmup`. `device`: where the batches go (the
    model is there already); on CUDA `amp` turns mixed precision on and each step waits for the GPU."""
    import torch

    from engine.train.detect_loop import detection_batch_loss

    cuda = device is not None and torch.device(device).type == "cuda"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=amp and cuda)
    times, it = [], iter(loader)
    for step in range(steps + warmup):
        started = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        if device is not None:
            batch = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}
        with torch.autocast("cuda", enabled=amp and cuda):
            loss, _, _ = detection_batch_loss(model, criterion, batch, 1.0, 10)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if cuda:
            torch.cuda.synchronize()
        if step >= warmup:
            times.append(time.perf_counter() - started)
    return times


def _setup(cfg: dict, rank: int = 0, world: int = 1):
    import torch
    from torch.utils.data import DataLoader
    from ultralytics.utils.loss import v8DetectionLoss

    from engine.build.detection import read_data_yaml
    from engine.offline import enable_offline
    from engine.train.detect_data import DetectionDataset, collate, load_samples
    from engine.train.detect_model import load_detection_model
    from engine.train.sampler import WeightedDistributedSampler

    enable_offline()
    torch.set_num_threads(cfg["threads"])
    data = Path(cfg["data"])
    names, _ = read_data_yaml(data / "data.yaml")
    samples = load_samples(data, "train")
    model = load_detection_model(cfg["model"], names)
    criterion = v8DetectionLoss(model)
    sampler = WeightedDistributedSampler(samples["weight"].to_numpy(), 100_000, rank, world, seed=0)
    loader = DataLoader(DetectionDataset(data, samples, cfg["imgsz"]), batch_size=cfg["batch"], sampler=sampler,
                        collate_fn=collate)
    return model, criterion, loader


def plain(cfg: dict) -> dict:
    model, criterion, loader = _setup(cfg)
    times = timed_steps(model.train(), criterion, loader, cfg["steps"], cfg["warmup"])
    return {"step_s": float(np.median(times)), "images_per_s": cfg["batch"] / float(np.median(times))}


def _ray_loop(cfg: dict) -> None:
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    model, criterion, loader = _setup(cfg, ctx.get_world_rank(), ctx.get_world_size())
    model = ray.train.torch.prepare_model(model.train())
    loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False, move_to_device=False)
    times = timed_steps(model, criterion, loader, cfg["steps"], cfg["warmup"], ctx.get_world_size())
    if ctx.get_world_rank() == 0:  # Train V2 keeps no metrics without a checkpoint: hand them over in a file
        Path(cfg["result_file"]).write_text(json.dumps({"step_s": float(np.median(times))}))


def ray_train(cfg: dict, workers: int, storage: Path) -> dict:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    name = f"bench-{workers}w-{time.time_ns()}"
    result_file = storage / f"{name}.json"
    storage.mkdir(parents=True, exist_ok=True)
    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False)
    try:
        TorchTrainer(_ray_loop, train_loop_config={**cfg, "result_file": str(result_file)},
                     scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": cfg["threads"]}),
                     run_config=RunConfig(storage_path=str(storage), name=name)).fit()
    finally:
        ray.shutdown()
    step = json.loads(result_file.read_text())["step_s"]
    return {"step_s": step, "images_per_s": workers * cfg["batch"] / step,
            "wall_s_including_startup": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="runs/demo/dataset")
    parser.add_argument("--model", default="runs/demo/base/base.pt")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--docs", help="rewrite the training table in this Markdown file (docs/benchmarks.md)")
    args = parser.parse_args()
    cfg = {"data": str(Path(args.data).resolve()), "model": str(Path(args.model).resolve()), "imgsz": args.imgsz,
           "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "threads": 1}
    storage = Path("runs/bench-train").resolve()
    results = {"plain_1_thread": plain(cfg), "ray_train_1_worker": ray_train(cfg, 1, storage),
               "ray_train_2_workers": ray_train(cfg, 2, storage)}
    results["ratios"] = {
        "ray_1_worker_step_vs_plain": round(results["ray_train_1_worker"]["step_s"] / results["plain_1_thread"]["step_s"], 3),
        "two_workers_vs_one_images_per_s": round(results["ray_train_2_workers"]["images_per_s"]
                                                 / results["ray_train_1_worker"]["images_per_s"], 3)}
    report = {"machine": describe_machine(), "config": cfg, **results}
    from bench.mining import publish

    publish(report, args.out, "train", table_markdown, args.docs)


def table_markdown(report: dict, source: str) -> str:
    rows = [("plain loop, step", report["plain_1_thread"]), ("Ray Train, 1 worker, step", report["ray_train_1_worker"]),
            ("Ray Train, 2 workers, step", report["ray_train_2_workers"])]
    r = report["ratios"]
    return "\n".join([f"Result `{source}`:", "", "| | step | images/s |", "|---|---|---|",
                      *(f"| {name} | {v['step_s']:.3f} s | {v['images_per_s']:.1f} |" for name, v in rows),
                      f"| Ray Train 1 worker / plain (step time) | **{r['ray_1_worker_step_vs_plain']}** | |",
                      f"| 2 workers / 1 worker (images/s) | | **{r['two_workers_vs_one_images_per_s']}** |"])


if __name__ == "__main__":
    main()
