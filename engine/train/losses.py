"""Losses of Quarry's fine-tuning (pure torch).

Detection FP penalty, the detection analogue of seed 003's term: on each image with no
object (a hard negative or background frame), the detector's top class probability at each
anchor, `p_a = max_c sigmoid(score[a, c])`; the image's penalty is the mean of its `top_k`
largest `p_a` (a smooth maximum: the anchors that would fire after NMS); the term is

    fp_penalty * mean over the batch's negative images of that image penalty

and 0 for a batch without negative images. (Averaging over all anchors would be swamped by
the thousands of quiet background anchors.)

Segmentation (seed 003): focal_w * focal + dice_w * dice + fp_penalty * mean over authentic
(all-zero mask) images of the mean predicted forgery probability.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def detection_fp_penalty(scores: torch.Tensor, negative: torch.Tensor, top_k: int = 10) -> torch.Tensor:
    """`scores` (B, nc, A) class logits; `negative` (B,) bool: images with no object."""
    if not bool(negative.any()):
        return scores.sum() * 0.0  # keeps the graph
    probs = scores[negative].sigmoid().amax(dim=1)  # (n_neg, A)
    k = min(top_k, probs.shape[1])
    return probs.topk(k, dim=1).values.mean(dim=1).mean()


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Binary focal loss (Lin et al.), mean over pixels."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = alpha * target + (1 - alpha) * (1 - target)
    return (alpha_t * (1 - p_t) ** gamma * ce).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice over the batch (all pixels together), with smoothing `eps`."""
    p = logits.sigmoid().reshape(-1)
    t = target.reshape(-1)
    return 1 - (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)


def segmentation_fp_penalty(logits: torch.Tensor, authentic: torch.Tensor) -> torch.Tensor:
    """Mean predicted forgery probability over the authentic images of the batch (0 if none)."""
    if not bool(authentic.any()):
        return logits.sum() * 0.0
    return logits[authentic].sigmoid().mean()


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor, authentic: torch.Tensor, focal_w: float = 0.5,
                      dice_w: float = 0.5, fp_penalty: float = 4.0) -> tuple[torch.Tensor, dict]:
    """Seed 003's loss (defaults 0.5 / 0.5 / 4.0) and its parts."""
    parts = {"focal": focal_loss(logits, masks), "dice": dice_loss(logits, masks),
             "fp": segmentation_fp_penalty(logits, authentic)}
    total = focal_w * parts["focal"] + dice_w * parts["dice"] + fp_penalty * parts["fp"]
    return total, {k: float(v.detach()) for k, v in parts.items()}
