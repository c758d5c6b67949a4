"""Box matching and detection counts: precision, recall, and the frame-level FP rate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) of xyxy boxes `a` (n, 4) and `b` (m, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_detections(pred_xyxy, pred_conf, pred_cls, gt_xyxy, gt_cls, iou_threshold: float = 0.5) -> np.ndarray:
    """Greedy COCO-style matching: predictions in descending confidence each take the unmatched
    ground-truth box of the same class with the highest IoU >= `iou_threshold`.

    Returns a boolean array: True where the prediction is a true positive.
    """
    pred_xyxy = np.asarray(pred_xyxy, np.float64).reshape(-1, 4)
    gt_xyxy = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
    pred_cls, gt_cls = np.asarray(pred_cls).reshape(-1), np.asarray(gt_cls).reshape(-1)
    tp = np.zeros(len(pred_xyxy), bool)
    if len(pred_xyxy) == 0 or len(gt_xyxy) == 0:
        return tp
    iou = box_iou(pred_xyxy, gt_xyxy)
    iou[pred_cls[:, None] != gt_cls[None, :]] = 0.0
    taken = np.zeros(len(gt_xyxy), bool)
    for i in np.argsort(-np.asarray(pred_conf, np.float64), kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            tp[i], taken[j] = True, True
    return tp


@dataclass
class DetectionCounts:
    """Running totals over images."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    images: int = 0
    images_with_detections: int = 0

    def add_image(self, tp_flags: np.ndarray, n_gt: int) -> None:
        n_tp = int(np.sum(tp_flags))
        self.tp += n_tp
        self.fp += len(tp_flags) - n_tp
        self.fn += n_gt - n_tp
        self.images += 1
        self.images_with_detections += int(len(tp_flags) > 0)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def image_fp_rate(self) -> float:
        """Share of images with at least one detection; on images with no objects, the
        frame-level false-alarm rate."""
        return self.images_with_detections / self.images if self.images else 0.0

    @property
    def fp_per_image(self) -> float:
        return self.fp / self.images if self.images else 0.0
