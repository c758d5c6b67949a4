"""The demo's stand-in for a user's pretrained CLIP: the tiny open_clip architecture trained
contrastively (open_clip's own `ClipLoss`) on world frames with ground-truth captions, and
scored on the held-out frames the way mining uses it.

The checkpoint is a plain `state_dict`, which open_clip's own loader (and so
`ClipSpec(checkpoint=...)`) loads with `weights_only=True`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from pydantic import Field

from engine.config import Section
from engine.metrics.ranking import roc_auc
from engine.mining.config import DEFAULT_LOOKALIKE_PROMPTS, DEFAULT_WORKZONE_PROMPTS
from engine.mining.fusion import clip_workzone_probability
from engine.models.clip import ClipModel, ClipSpec, build_clip, clip_pixels, encode_images, encode_texts, logit_scale
from engine.storage import atomic_path

log = logging.getLogger("quarry.pretrain")

# one prompt per lookalike kind, as mining's default lookalike prompts name them
KIND_PROMPTS = dict(zip(("orange_truck", "orange_sign", "orange_person", "glare"), DEFAULT_LOOKALIKE_PROMPTS[:4]))


class ClipTrainingConfig(Section):
    """Contrastive training of the tiny CLIP on the world's captioned frames (2 CPU cores: ~1 min)."""

    enabled: bool = Field(True, description="train the CLIP (off: mining's CLIP keeps random weights)")
    arch: str = Field("quarry-tiny-clip", description="open_clip architecture to train from random weights")
    epochs: int = Field(15, ge=1, le=1000)
    batch: int = Field(64, ge=2, le=4096, description="image-caption pairs per step (the contrastive negatives)")
    lr: float = Field(5e-4, gt=0.0, le=1.0, description="peak AdamW learning rate (linear warmup, cosine decay)")
    weight_decay: float = Field(0.1, ge=0.0, le=1.0)
    warmup_steps: int = Field(20, ge=0)
    seed: int = Field(0, ge=0)


def _load_images(folder: Path, names) -> np.ndarray:
    images = []
    for name in names:
        bgr = cv2.imread(str(folder / name))
        if bgr is None:
            raise FileNotFoundError(f"cannot read image {folder / name}")
        images.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(images)


def train_clip(captions_dir: Path, out_path: Path, cfg: ClipTrainingConfig) -> dict:
    """Train on `<captions_dir>/index.parquet`; write the state_dict to `out_path`."""
    import torch
    from open_clip.loss import ClipLoss

    index = pd.read_parquet(Path(captions_dir) / "index.parquet")
    if index.empty:
        raise ValueError(f"no captioned images in {captions_dir} (synth captions.n_images=0?)")
    images = _load_images(Path(captions_dir), index["image"])
    clip = build_clip(ClipSpec(arch=cfg.arch, device="cpu"))
    tokens = clip.tokenizer(list(index["caption"]))
    model = clip.model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(index) / cfg.batch)
    total = cfg.epochs * steps_per_epoch

    def lr_at(step: int) -> float:  # linear warmup, then cosine to 0
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    loss_fn = ClipLoss()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    started, losses = time.perf_counter(), []
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(index))
        epoch_loss = []
        for start in range(0, len(order), cfg.batch):
            idx = order[start : start + cfg.batch]
            if len(idx) < 2:
                continue  # a contrastive step needs negatives
            batch = images[idx]
            flip = rng.random(len(idx)) < 0.5  # mirror half: a road scene is a road scene mirrored
            batch = np.where(flip[:, None, None, None], batch[:, :, ::-1], batch)
            image_f, text_f, scale = model(clip_pixels(batch, clip), tokens[idx])
            loss = loss_fn(image_f, text_f, scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():  # as in CLIP: keep the temperature below 100
                model.logit_scale.clamp_(0, math.log(100))
            epoch_loss.append(loss.item())
        losses.append(round(float(np.mean(epoch_loss)), 4))
        log.info("CLIP epoch %d/%d: contrastive loss %.3f", epoch + 1, cfg.epochs, losses[-1])
    model.eval()
    with atomic_path(Path(out_path)) as tmp:
        torch.save(model.state_dict(), tmp)
    return {"checkpoint": str(out_path), "images": len(index), "epochs": cfg.epochs, "loss_per_epoch": losses,
            "seconds": round(time.perf_counter() - started, 1)}


def evaluate_clip(clip: ClipModel, heldout_dir: Path, workzone_prompts=DEFAULT_WORKZONE_PROMPTS,
                  lookalike_prompts=DEFAULT_LOOKALIKE_PROMPTS) -> dict:
    """On the held-out frames: ROC AUC of CLIP's work-zone probability (mining's prompts)
    between work-zone and lookalike frames, and zero-shot accuracy on the lookalike kind."""
    index = pd.read_parquet(Path(heldout_dir) / "index.parquet")
    images = _load_images(Path(heldout_dir), index["image"])
    emb = np.concatenate([encode_images(clip, images[i : i + 64]) for i in range(0, len(images), 64)])
    text = encode_texts(clip, list(workzone_prompts) + list(lookalike_prompts))
    p_wz = clip_workzone_probability(emb, text, len(workzone_prompts), logit_scale(clip))
    is_wz = (index["kind"] == "workzone").to_numpy()
    lookalike = index["kind"].to_numpy() == "lookalike"
    kinds = list(KIND_PROMPTS)
    kind_text = encode_texts(clip, [KIND_PROMPTS[k] for k in kinds])
    guessed = np.array(kinds)[np.argmax(emb[lookalike] @ kind_text.T, axis=1)]
    return {"workzone_auc": round(roc_auc(is_wz, p_wz), 4),
            "lookalike_kind_accuracy": round(float(np.mean(guessed == index["lookalike_kind"].to_numpy()[lookalike])), 4),
            "frames": {"workzone": int(is_wz.sum()), "lookalike": int(lookalike.sum())}}
