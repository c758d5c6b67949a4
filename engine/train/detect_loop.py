"""The detection training loop that runs on every Ray Train worker (DDP: gloo on CPU, nccl
on GPU). Ultralytics' loss, Quarry's sampling, per-sample loss weights and FP penalty:

    loss = sum over loss-weight groups g of w_g * ultralytics_loss(g) / B
           + fp_penalty * detection_fp_penalty(scores of the batch's images with no object)

(`ultralytics_loss(g)` is box + cls + dfl with Ultralytics' gains, times the group's size, as
Ultralytics scales it; B the batch size; the penalty's formula is in engine/train/losses.py.)
Warmup then cosine learning rate, gradient accumulation and clipping, mixed precision on GPU,
an EMA of the weights; rank 0 validates after every epoch, keeps the best model by fitness =
mAP50-95 - fitness_fp_weight x FP rate on hard-negative val frames, stops early after
`patience` epochs without a better one, and reports a checkpoint (model, EMA, optimizer,
scheduler, scaler, epoch, best, history, the best model's Ultralytics file) every epoch
(engine/train/epochs.py).
A restarted worker group resumes from the last checkpoint.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

from engine.train.losses import detection_fp_penalty


def weighted_detection_loss(criterion, preds: dict, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Ultralytics' loss per group of images sharing a loss weight, weighted and summed, per
    image of the batch. Returns (loss, its box/cls/dfl parts)."""
    weights = batch["loss_weight"]
    size = len(weights)
    total, parts = None, None
    for w in torch.unique(weights):
        idx = torch.nonzero(weights == w).flatten()
        if len(idx) == size:
            sub_preds, sub_batch = preds, batch
        else:
            lookup = torch.full((size,), -1, dtype=torch.long, device=weights.device)
            lookup[idx] = torch.arange(len(idx), device=weights.device)
            keep = lookup[batch["batch_idx"].long()] >= 0
            sub_preds = {"boxes": preds["boxes"][idx], "scores": preds["scores"][idx],
                         "feats": [f[idx] for f in preds["feats"]]}
            sub_batch = {"cls": batch["cls"][keep], "bboxes": batch["bboxes"][keep],
                         "batch_idx": lookup[batch["batch_idx"].long()[keep]].to(batch["batch_idx"].dtype)}
        loss, items = criterion(sub_preds, sub_batch)
        part = w * loss.sum()
        total = part if total is None else total + part
        items = torch.stack(list(items.values())) if isinstance(items, dict) else items
        parts = items * len(idx) if parts is None else parts + items * len(idx)
    return total / size, parts / size


def detection_batch_loss(model, criterion, batch: dict, fp_penalty: float, fp_top_k: int):
    """(loss, its box/cls/dfl parts, the FP penalty term) of one batch, as the loop trains on it."""
    preds = model(batch["img"])
    det_loss, parts = weighted_detection_loss(criterion, preds, batch)
    fp = detection_fp_penalty(preds["scores"].float(), batch["negative"], fp_top_k)
    return det_loss + fp_penalty * fp, parts, fp


def warmup_cosine(warmup_updates: int, total_updates: int, final_fraction: float):
    """lr multiplier: linear from ~0 to 1 over warmup, then cosine down to `final_fraction`."""
    def factor(update: int) -> float:
        if update < warmup_updates:
            return (update + 1) / warmup_updates
        progress = (update - warmup_updates) / max(1, total_updates - warmup_updates)
        return final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return factor


def build_optimizer(model, d):
    """Ultralytics' grouping: weight decay on conv/linear weights only, not on norms and biases."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            (decay if name == "weight" and not isinstance(module, torch.nn.modules.batchnorm._NormBase) else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": d.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if d.optimizer == "SGD":
        return torch.optim.SGD(groups, lr=d.lr, momentum=d.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=d.lr, betas=(d.momentum, 0.999))


def detect_train_loop(loop_config: dict) -> None:
    import ray.train
    import ray.train.torch
    from torch.utils.data import DataLoader
    from ultralytics.utils.loss import v8DetectionLoss
    from ultralytics.utils.torch_utils import ModelEMA

    from engine.build.detection import read_data_yaml
    from engine.offline import enable_offline
    from engine.train.augment import detection_augment, reseed_worker
    from engine.train.config import TrainConfig
    from engine.train.detect_data import DetectionDataset, collate, load_samples
    from engine.train.detect_eval import evaluate_dataset
    from engine.train.detect_model import load_detection_model, save_ultralytics
    from engine.train.epochs import end_epoch, new_state, restore
    from engine.train.sampler import WeightedDistributedSampler
    from engine.tune.objective import objective

    enable_offline()
    cfg = TrainConfig.model_validate(loop_config["train"])
    d, root = cfg.detect, Path(cfg.data)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(d.seed + rank)
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    names, _ = read_data_yaml(root / "data.yaml")
    train_samples, val_samples = load_samples(root, "train"), load_samples(root, "val")
    if cfg.reweight is not None:  # e.g. a Tune trial's hard-negative and category weights
        from engine.build.weights import sample_weights

        w = cfg.reweight
        train_samples["weight"] = sample_weights(train_samples, w.kind, w.category, w.metadata)
    device = ray.train.torch.get_device()
    model = load_detection_model(d.model, names).to(device)
    criterion = v8DetectionLoss(model)  # built on the unwrapped model, on its device
    ema = ModelEMA(model) if d.ema else None
    model = ray.train.torch.prepare_model(model)
    net = model.module if hasattr(model, "module") else model
    sampler = WeightedDistributedSampler(train_samples["weight"].to_numpy(), d.samples_per_epoch or len(train_samples),
                                         rank, world, d.seed)
    loader = DataLoader(DetectionDataset(root, train_samples, d.imgsz, detection_augment(d.augment, d.seed + rank)),
                        batch_size=d.batch, sampler=sampler, collate_fn=collate, num_workers=d.workers,
                        worker_init_fn=reseed_worker)
    # add_dist_sampler=False: Ray Train would otherwise swap our sampler for a DistributedSampler
    loader = ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False, move_to_device=False)
    optimizer = build_optimizer(net, d)
    updates_per_epoch = max(1, math.ceil(len(sampler) / d.batch / d.accumulate))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
        round(d.warmup_epochs * updates_per_epoch), d.epochs * updates_per_epoch, d.lr_final))
    use_amp = d.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    state, (saved, best_model) = new_state(), restore(loop_config, device)
    if saved is not None:
        net.load_state_dict(saved["model"])
        if ema is not None and saved.get("ema") is not None:
            ema.ema.load_state_dict(saved["ema"])
            ema.updates = saved["ema_updates"]
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
    val_set = DetectionDataset(root, val_samples, d.imgsz)
    mlflow_cfg = loop_config.get("mlflow") if rank == 0 else None
    train_args = {"imgsz": d.imgsz, "data": str((root / "data.yaml").resolve()), "model": d.model}
    for epoch in range(state["epoch"], d.epochs):
        sampler.set_epoch(epoch)
        model.train()
        started, n_steps, sums = time.perf_counter(), 0, np.zeros(5)
        optimizer.zero_grad(set_to_none=True)
        for step, batch in enumerate(loader):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            update = (step + 1) % d.accumulate == 0 or step + 1 == len(loader)
            sync = model.no_sync() if world > 1 and not update else nullcontext()
            with sync, torch.autocast(device.type, enabled=use_amp):
                loss, parts, fp = detection_batch_loss(model, criterion, batch, d.fp_penalty, d.fp_top_k)
            scaler.scale(loss / d.accumulate).backward()
            if update:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(net.parameters(), d.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                if ema is not None:
                    ema.update(net)
            sums += [loss.item(), *parts.tolist(), fp.item()]
            n_steps += 1
        mean = sums / max(1, n_steps)
        metrics = {"epoch": epoch + 1, "train_loss": mean[0], "box_loss": mean[1], "cls_loss": mean[2], "dfl_loss": mean[3],
                   "fp_penalty": mean[4], "lr": scheduler.get_last_lr()[0], "epoch_seconds": time.perf_counter() - started,
                   "steps": n_steps}
        fitness = None
        evaluated = ema.ema if ema is not None else net
        if rank == 0:
            val = evaluate_dataset(evaluated, val_set, d.imgsz, d.conf_threshold, kinds=list(val_samples["kind"]))
            hn_fp = val.get("fp_rate_by_kind", {}).get("hard_negative", val["fp_rate"])
            metrics.update({f"val_{k}": v for k, v in val.items() if not isinstance(v, dict)}, val_hn_fp_rate=hn_fp)
            fitness = val["map50_95"] - d.fitness_fp_weight * hn_fp
            if cfg.objective is not None:  # the best model is the one Tune would pick
                metrics["objective"] = objective(metrics, cfg.objective)
                fitness = -metrics["objective"] if cfg.objective.mode == "min" else metrics["objective"]
        states = {"model": net.state_dict(), "ema": ema.ema.state_dict() if ema is not None else None,
                  "ema_updates": ema.updates if ema is not None else 0, "optimizer": optimizer.state_dict(),
                  "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict()}
        stop, best_model = end_epoch(state, metrics, fitness, rank, world, d.patience, states, best_model,
                                     lambda path: save_ultralytics(evaluated, path, train_args, dict(metrics)), mlflow_cfg)
        if stop:
            break
