"""The demo's stand-in for a user's segmentation model: smp trained plainly (focal + dice, no FP
penalty, no hard-negative weighting) on the world's training split of forged and authentic
images, in one process; scored on the held-out split (other seeds) by pixel precision /
recall / F1 on forgeries and the scan's FP rule on authentic images."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import torch
from pydantic import Field

from engine.config import Section
from engine.storage import atomic_path


class BaseSegmenterConfig(Section):
    enabled: bool = Field(True, description="train the base segmenter in `quarry pretrain`")
    arch: str = Field("Unet", description="smp architecture")
    encoder: str = Field("resnet18", description="smp encoder (random weights: offline)")
    noise_residual: bool = Field(True, description=(
        "a fixed high-pass noise residual beside the image (forensics practice); without it the U-Net stayed on the "
        "'nothing forged' plateau in two of three worlds"))
    imgsz: int = Field(128, ge=32, le=2048, multiple_of=32)
    epochs: int = Field(25, ge=1, le=1000)
    batch: int = Field(8, ge=1, le=512)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    threshold: float = Field(0.75, gt=0.0, lt=1.0, description="held-out scoring: pixel probability called forged (seed 003)")
    min_fp_ratio: float = Field(0.001, ge=0.0, le=1.0, description="held-out scoring: seed 002's FP share bound")
    seed: int = Field(0, ge=0)


def _samples(index: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"path": index["image"], "mask_path": index["mask"].fillna(""), "kind": index["kind"],
                         "loss_weight": 1.0})


def heldout_scores(model, world_dir: Path, imgsz: int, threshold: float, min_fp_ratio: float) -> dict:
    """The model on the world's held-out segmentation split."""
    from engine.segment.data import SegmentationDataset
    from engine.segment.loop import validate
    from engine.train.config import SegmentTrainConfig

    root = Path(world_dir) / "segmentation"
    index = pd.read_parquet(root / "index.parquet")
    held = index[index["split"] == "heldout"]
    s = SegmentTrainConfig(imgsz=imgsz, threshold=threshold, min_fp_ratio=min_fp_ratio)
    return validate(model, SegmentationDataset(root, _samples(held), imgsz), s)


def train_base_segmenter(world_dir: Path, out_path: Path, cfg: BaseSegmenterConfig) -> dict:
    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from engine.segment.data import SegmentationDataset
    from engine.segment.loop import train_plain
    from engine.train.augment import segmentation_augment
    from engine.train.config import SegmentTrainConfig

    root = Path(world_dir) / "segmentation"
    index = pd.read_parquet(root / "index.parquet")
    train = index[index["split"] == "train"]
    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = build_segmenter(SegmenterSpec(arch=cfg.arch, encoder=cfg.encoder, noise_residual=cfg.noise_residual))
    for param in model.parameters():
        param.requires_grad_(True)
    s = SegmentTrainConfig(imgsz=cfg.imgsz, batch=cfg.batch, lr=cfg.lr, fp_penalty=0.0, seed=cfg.seed)
    losses = train_plain(model, SegmentationDataset(root, _samples(train), cfg.imgsz, segmentation_augment("light", cfg.seed)), s,
                         cfg.epochs)
    with atomic_path(Path(out_path)) as tmp:
        torch.save(model.state_dict(), tmp)
    return {"checkpoint": str(out_path), "arch": cfg.arch, "encoder": cfg.encoder,
            "noise_residual": cfg.noise_residual, "epochs": cfg.epochs,
            "loss_per_epoch": [round(e["train_loss"], 4) for e in losses], "seconds": round(time.perf_counter() - started, 1),
            "heldout": heldout_scores(model, world_dir, cfg.imgsz, cfg.threshold, cfg.min_fp_ratio)}
