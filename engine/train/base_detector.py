"""Train the "user's" base detector with Ultralytics' own trainer, offline.

This stands in for the model a user brings: trained on work zones and plain road only, so it
has never seen the orange lookalikes that mining will find.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from pydantic import Field

from engine.config import Section
from engine.models.detector import TINY_YOLO, build_detector, torch_threads_kept
from engine.storage import atomic_path
from engine.synth.shapes import CUE_CLASSES

log = logging.getLogger("quarry.pretrain")


class BaseTrainingConfig(Section):
    """Knobs of Ultralytics' trainer for the base detector (defaults sized for 2 CPU cores)."""

    enabled: bool = Field(True, description="train the base detector in `quarry pretrain`")
    model: str = Field(TINY_YOLO, description="architecture .yaml (random init) or a local .pt to start from")
    epochs: int = Field(20, ge=1, le=1000)
    imgsz: int = Field(256, ge=32, le=2048, multiple_of=32, description="training size in pixels")
    batch: int = Field(16, ge=1, le=1024)
    workers: int = Field(2, ge=0, le=64, description="dataloader worker processes")
    device: str = Field("cpu", description="cpu, 0, 0,1 ... as Ultralytics takes it")
    optimizer: str = Field("AdamW", description="Ultralytics optimizer name (SGD, Adam, AdamW, auto ...)")
    lr0: float = Field(0.004, gt=0.0, le=1.0, description="initial learning rate")
    # Mosaic and strong zoom shrink the world's already small objects: with them, val mAP50
    # after 7 epochs was 0.15 instead of 0.34 in our runs on the demo world.
    mosaic: float = Field(0.0, ge=0.0, le=1.0, description="probability of mosaic augmentation")
    scale: float = Field(0.25, ge=0.0, le=0.9, description="random zoom gain (+/-)")
    patience: int = Field(50, ge=1, description="early-stopping patience in epochs")
    seed: int = Field(0, ge=0)


def train_base_detector(data_yaml: Path, out_dir: Path, cfg: BaseTrainingConfig) -> Path:
    """Train on `data_yaml`; return `<out_dir>/base.pt`, loadable with `ultralytics.YOLO`."""
    import torch

    data_yaml, out_dir = Path(data_yaml), Path(out_dir)
    if not data_yaml.is_file():
        raise FileNotFoundError(f"dataset not found: {data_yaml} (run `quarry synth` first)")
    model = build_detector(cfg.model, list(CUE_CLASSES))
    started = time.perf_counter()
    threads = torch.get_num_threads()
    # Ultralytics would train on cpu_count - 1 threads: 1 on 2 cores, 1.5x slower than 2 here
    model.add_callback("on_train_start", lambda trainer: torch.set_num_threads(threads))
    with torch_threads_kept():
        model.train(
            data=str(data_yaml.resolve()),
            epochs=cfg.epochs,
            imgsz=cfg.imgsz,
            batch=cfg.batch,
            workers=cfg.workers,
            device=cfg.device,
            optimizer=cfg.optimizer,
            lr0=cfg.lr0,
            mosaic=cfg.mosaic,
            close_mosaic=0,
            scale=cfg.scale,
            patience=cfg.patience,
            seed=cfg.seed,
            deterministic=True,
            warmup_epochs=min(1, cfg.epochs - 1),
            project=str(out_dir.resolve()),
            name="ultralytics",
            exist_ok=True,
            plots=False,
            verbose=False,
            amp=cfg.device != "cpu",
        )
    best = Path(model.trainer.best)
    if not best.is_file():
        raise RuntimeError(f"Ultralytics finished without writing {best}")
    target = out_dir / "base.pt"
    with atomic_path(target) as tmp:
        shutil.copyfile(best, tmp)
    log.info("base detector trained in %.0f s: %s", time.perf_counter() - started, target)
    return target

