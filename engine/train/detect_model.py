"""Detection models for Quarry's training loop: load one to fine-tune, save one Ultralytics
loads (`ultralytics.YOLO(path)` predicts and runs its own `.val()` on it)."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from engine.models import ModelError
from engine.storage import atomic_path


def load_detection_model(source: str, class_names: dict[int, str] | None = None):
    """An `ultralytics` DetectionModel in float32, trainable as Ultralytics trains it, with its
    default loss gains in `model.args`: from a local `.pt`, or an architecture `.yaml`
    (random weights, `class_names` sets its classes)."""
    from ultralytics.cfg import get_cfg

    from engine.models.detector import build_detector

    yolo = build_detector(source, list(class_names.values()) if class_names and source.endswith((".yaml", ".yml")) else None)
    model = yolo.model.float()
    if class_names and list(model.names.values()) != list(class_names.values()):
        raise ModelError(f"{source} predicts {list(model.names.values())}; the dataset has {list(class_names.values())}")
    model.args = get_cfg()  # box/cls/dfl gains the loss reads as attributes
    for name, param in model.named_parameters():
        # as Ultralytics' trainer: the DFL projection is a fixed integral, never trained
        param.requires_grad_(".dfl" not in name)
    return model


def save_ultralytics(model, path: Path, train_args: dict, metrics: dict | None = None) -> Path:
    """Write `model` (unwrapped from DDP) as an Ultralytics checkpoint, atomically."""
    import ultralytics

    snapshot = copy.deepcopy(model).half().to(memory_format=torch.contiguous_format)
    if hasattr(snapshot, "criterion"):
        snapshot.criterion = None
    ckpt = {"epoch": -1, "best_fitness": (metrics or {}).get("fitness"), "model": snapshot, "ema": None, "updates": None,
            "optimizer": None, "train_args": {"task": "detect", **train_args}, "train_metrics": metrics or {},
            "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "version": ultralytics.__version__}
    with atomic_path(Path(path)) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)
