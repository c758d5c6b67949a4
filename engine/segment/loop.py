"""Segmentation fine-tuning on Ray Train (seeds 002, 003): one named smp variant per run,
seed 003's loss (focal_w x focal + dice_w x dice + fp_penalty x mean probability on authentic
images), per-sample loss weights, the weighted distributed sampler, AdamW at lr 1e-4 with a
cosine schedule; rank 0 validates (pixel P/R/F1 on forged images, FP rate on authentic
images by the scan's rule) and keeps the best by fitness = F1 - FP rate."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import torch

from engine.segment.metrics import FpRule, SegmentationEvaluator
from engine.segment.predict import predict_probabilities
from engine.train.losses import segmentation_loss

log = logging.getLogger("quarry.segment")


def run_epoch(model, loader, optimizer, scheduler, s, device) -> dict:
    """One pass over `loader` (seed 003's loss, per-sample weights); mean loss parts."""
    model.train()
    sums, steps = np.zeros(4), 0
    for images, masks, authentic, weights in loader:
        images, masks = images.to(device), masks.to(device)
        authentic, weights = authentic.to(device), weights.to(device)
        logits = model(images)
        per_image = []
        for w in torch.unique(weights):  # weight groups, as in detection
            idx = weights == w
            loss, parts = segmentation_loss(logits[idx], masks[idx], authentic[idx], s.focal_w, s.dice_w, s.fp_penalty)
            per_image.append(w * loss * idx.sum())
        loss = torch.stack(per_image).sum() / len(weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        sums += [loss.item(), parts["focal"], parts["dice"], parts["fp"]]
        steps += 1
    mean = sums / max(1, steps)
    return {"train_loss": mean[0], "focal": mean[1], "dice": mean[2], "fp_term": mean[3], "steps": steps}


def validate(model, dataset, s, batch: int = 16) -> dict:
    evaluator = SegmentationEvaluator(FpRule(s.threshold, s.min_fp_ratio, 0))
    for start in range(0, len(dataset), batch):
        items = [dataset.load(i) for i in range(start, min(start + batch, len(dataset)))]
        for (_, mask), prob in zip(items, predict_probabilities(model, [img for img, _ in items], s.imgsz)):
            evaluator.add_image(prob, mask)
    model.train()
    return evaluator.results()


def cosine(total_steps: int):
    return lambda step: 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total_steps))))


def segment_train_loop(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch
    from torch.utils.data import DataLoader

    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from engine.offline import enable_offline
    from engine.segment.data import SegmentationDataset
    from engine.storage import atomic_path
    from engine.train.augment import reseed_worker, segmentation_augment
    from engine.train.config import TrainConfig
    from engine.train.detect_data import load_samples
    from engine.train.epochs import end_epoch, new_state, restore
    from engine.train.sampler import WeightedDistributedSampler

    enable_offline()
    cfg = TrainConfig.model_validate(loop_config["train"])
    s, root, variant = cfg.segment, Path(cfg.data), cfg.segment.variants[loop_config["variant"]]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(s.seed + rank)
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    train_samples, val_samples = load_samples(root, "train"), load_samples(root, "val")
    device = ray.train.torch.get_device()
    model = build_segmenter(SegmenterSpec(arch=variant.arch, encoder=variant.encoder, checkpoint=variant.checkpoint,
                                         noise_residual=variant.noise_residual))
    for param in model.parameters():
        param.requires_grad_(True)
    model = ray.train.torch.prepare_model(model.to(device).train())
    net = model.module if hasattr(model, "module") else model
    sampler = WeightedDistributedSampler(train_samples["weight"].to_numpy(), len(train_samples), rank, world, s.seed)
    loader = DataLoader(SegmentationDataset(root, train_samples, s.imgsz, segmentation_augment(s.augment, s.seed + rank)),
                        batch_size=s.batch, sampler=sampler, num_workers=s.workers, worker_init_fn=reseed_worker)
    loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False, move_to_device=False)
    optimizer = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine(s.epochs * len(loader)))
    state, (saved, best_model) = new_state(), restore(loop_config, device)
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
    val_set = SegmentationDataset(root, val_samples, s.imgsz)
    mlflow_cfg = loop_config.get("mlflow") if rank == 0 else None

    def save_best(path: Path) -> Path:
        with atomic_path(path) as tmp:
            torch.save(net.state_dict(), tmp)
        return path

    for epoch in range(state["epoch"], s.epochs):
        sampler.set_epoch(epoch)
        started = time.perf_counter()
        metrics = {"epoch": epoch + 1, **run_epoch(model, loader, optimizer, scheduler, s, device),
                   "lr": scheduler.get_last_lr()[0]}
        metrics["epoch_seconds"] = time.perf_counter() - started
        fitness = None
        if rank == 0:
            val = validate(net, val_set, s)
            metrics.update({f"val_{k}": v for k, v in val.items()})
            fitness = val["f1"] - val["fp_rate"]
        states = {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
        stop, best_model = end_epoch(state, metrics, fitness, rank, world, s.patience, states, best_model, save_best,
                                     mlflow_cfg)
        if stop:
            break


def train_plain(model, dataset, s, epochs: int, device="cpu", weights=None) -> list[dict]:
    """The same epochs in one process without Ray (the demo's base segmenter: what a user
    brings, trained plainly): shuffled, or drawn by sampling `weights` as the Ray loop draws;
    returns the per-epoch losses."""
    from torch.utils.data import DataLoader

    from engine.train.sampler import WeightedDistributedSampler

    if weights is None:
        sampler, loader = None, DataLoader(dataset, batch_size=s.batch, shuffle=True,
                                           generator=torch.Generator().manual_seed(s.seed))
    else:
        sampler = WeightedDistributedSampler(weights, len(dataset), 0, 1, s.seed)
        loader = DataLoader(dataset, batch_size=s.batch, sampler=sampler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine(epochs * len(loader)))
    losses = []
    for epoch in range(epochs):
        started = time.perf_counter()
        if sampler is not None:
            sampler.set_epoch(epoch)
        losses.append(run_epoch(model.to(device), loader, optimizer, scheduler, s, device))
        log.info("segmenter epoch %d/%d: loss %.3f (%.1f s)", epoch + 1, epochs, losses[-1]["train_loss"],
                 time.perf_counter() - started)
    return losses
