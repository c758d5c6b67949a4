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


IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)  # COCO's mAP50-95 thresholds
RECALL_POINTS = np.linspace(0.0, 1.0, 101)  # COCO's 101-point interpolation


def average_precision(tp: np.ndarray, conf: np.ndarray, n_gt: int) -> float:
    """COCO-style AP of one class at one IoU threshold: detections by confidence, precision
    made monotone, sampled at 101 recall points. NaN when the class has no ground truth."""
    if n_gt == 0:
        return float("nan")
    if len(tp) == 0:  # objects, and no detection of their class
        return 0.0
    order = np.argsort(-np.asarray(conf), kind="mergesort")
    tp = np.asarray(tp, bool)[order]
    tps, fps = np.cumsum(tp), np.cumsum(~tp)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(sampled.mean())


class DetectionEvaluator:
    """Accumulates images; gives mAP50 and mAP50-95 (COCO-style, classes with ground truth),
    precision and recall at a confidence threshold, and the frame-level FP rate on images
    with no object. Matching per threshold as in `match_detections`."""

    def __init__(self, conf_threshold: float = 0.25, iou_threshold: float = 0.5):
        self.conf_threshold, self.iou_threshold = conf_threshold, iou_threshold
        self.tp: list[np.ndarray] = []  # (n, 10) per image
        self.conf: list[np.ndarray] = []
        self.cls: list[np.ndarray] = []
        self.gt_cls: list[np.ndarray] = []
        self.at_conf = DetectionCounts()
        self.negatives = DetectionCounts()

    def add_image(self, pred_xyxy, pred_conf, pred_cls, gt_xyxy, gt_cls) -> None:
        pred_conf = np.asarray(pred_conf, np.float64).reshape(-1)
        pred_cls = np.asarray(pred_cls).reshape(-1).astype(np.int64)
        gt_cls = np.asarray(gt_cls).reshape(-1).astype(np.int64)
        tp = np.stack([match_detections(pred_xyxy, pred_conf, pred_cls, gt_xyxy, gt_cls, t) for t in IOU_THRESHOLDS],
                      axis=1) if len(pred_conf) else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        self.tp.append(tp)
        self.conf.append(pred_conf)
        self.cls.append(pred_cls)
        self.gt_cls.append(gt_cls)
        keep = pred_conf >= self.conf_threshold
        at_iou = match_detections(np.asarray(pred_xyxy)[keep], pred_conf[keep], pred_cls[keep], gt_xyxy, gt_cls,
                                  self.iou_threshold)
        self.at_conf.add_image(at_iou, len(gt_cls))
        if len(gt_cls) == 0:
            self.negatives.add_image(at_iou, 0)

    def results(self) -> dict:
        tp = np.concatenate(self.tp) if self.tp else np.zeros((0, len(IOU_THRESHOLDS)), bool)
        conf = np.concatenate(self.conf) if self.conf else np.zeros(0)
        cls = np.concatenate(self.cls) if self.cls else np.zeros(0, np.int64)
        gt = np.concatenate(self.gt_cls) if self.gt_cls else np.zeros(0, np.int64)
        classes = np.unique(gt)
        ap = np.array([[average_precision(tp[cls == c, t], conf[cls == c], int((gt == c).sum()))
                        for t in range(len(IOU_THRESHOLDS))] for c in classes]).reshape(len(classes), len(IOU_THRESHOLDS))
        has = len(classes) > 0
        return {"map50": float(ap[:, 0].mean()) if has else 0.0, "map50_95": float(ap.mean()) if has else 0.0,
                "ap50_per_class": {int(c): float(a) for c, a in zip(classes, ap[:, 0])} if has else {},
                "precision": self.at_conf.precision, "recall": self.at_conf.recall, "images": len(self.tp),
                "tp": self.at_conf.tp, "fp": self.at_conf.fp, "fn": self.at_conf.fn,
                "negative_images": self.negatives.images, "fp_rate": self.negatives.image_fp_rate,
                "fp_per_negative_image": self.negatives.fp_per_image}
