"""Per-frame scores from one frame's detections and CLIP probabilities (pure numpy).

Seed 000 reports a YOLO score and a CLIP+YOLO fused score per frame:
    yolo_score  = highest confidence among cue-class detections (0 when there is none)
    fused_score = w_yolo * yolo_score + w_clip * p_workzone
where p_workzone is CLIP's probability mass on the work-zone prompts, against the
lookalike prompts. The weights are config (normalised to sum to 1).
"""

from __future__ import annotations

import numpy as np


def clip_workzone_probability(image_emb: np.ndarray, text_emb: np.ndarray, n_workzone_prompts: int,
                              logit_scale: float = 100.0) -> np.ndarray:
    """Probability mass on the first `n_workzone_prompts` prompts for each image.

    `image_emb` (n, d) and `text_emb` (p, d) are L2-normalised; prompts are ordered work-zone
    first, then lookalike. Softmax over all prompts of `logit_scale * cosine`.
    """
    logits = logit_scale * (np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, :n_workzone_prompts].sum(axis=1)


def fuse_scores(yolo_score: np.ndarray, p_workzone: np.ndarray, w_yolo: float, w_clip: float) -> np.ndarray:
    """Weighted mean of the detector score and CLIP's work-zone probability, in [0, 1]."""
    total = w_yolo + w_clip
    if total <= 0:
        raise ValueError("fusion weights must not both be zero")
    return (w_yolo * np.asarray(yolo_score, np.float64) + w_clip * np.asarray(p_workzone, np.float64)) / total


def frame_cues(cls: np.ndarray, conf: np.ndarray, xyxy: np.ndarray, cue_class_ids: list[int],
               cue_conf: float, frame_w: int, frame_h: int) -> dict:
    """Cue statistics of one frame's detections.

    Returns yolo_score (max cue confidence), cue_count (cue boxes >= cue_conf), cue_mask
    (bit k set when the k-th of `cue_class_ids` is present >= cue_conf, so any class ids fit
    in 63 bits as long as there are at most 63 cue classes), cue_area_frac (their summed box
    area over the frame area, capped at 1) and cue_center_x (mean box centre, 0..1, NaN if none).
    """
    cls, conf = np.asarray(cls).reshape(-1), np.asarray(conf, np.float64).reshape(-1)
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    is_cue = np.isin(cls, cue_class_ids)
    yolo_score = float(conf[is_cue].max()) if is_cue.any() else 0.0
    strong = is_cue & (conf >= cue_conf)
    mask = 0
    for c in np.unique(cls[strong]):
        mask |= 1 << cue_class_ids.index(int(c))
    boxes = xyxy[strong]
    area = float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).sum()) / (frame_w * frame_h)
    center_x = float(((boxes[:, 0] + boxes[:, 2]) / 2).mean() / frame_w) if len(boxes) else float("nan")
    return {"yolo_score": yolo_score, "cue_count": int(strong.sum()), "cue_mask": mask,
            "cue_area_frac": min(area, 1.0), "cue_center_x": center_x}
