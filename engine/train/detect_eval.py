"""Evaluate a detection model on a list of images with YOLO labels: mAP50, mAP50-95,
precision / recall at a confidence, and the FP rate on images with no object (overall, and
per sample kind). Letterbox, forward, Ultralytics' NMS, boxes back to image pixels."""

from __future__ import annotations

import numpy as np
import torch

from engine.metrics.detection import DetectionEvaluator
from engine.train.detect_data import letterbox


@torch.no_grad()
def predict_letterboxed(model, images: list[np.ndarray], imgsz: int, conf: float = 0.001, iou: float = 0.7,
                        device=None) -> list[np.ndarray]:
    """Detections (n, 6: x1 y1 x2 y2 conf cls, image pixels) per RGB image, from a raw
    DetectionModel (not a YOLO wrapper) in eval mode."""
    from ultralytics.utils.nms import non_max_suppression

    boxed = [letterbox(img, imgsz) for img in images]
    x = torch.from_numpy(np.stack([b[0] for b in boxed]).transpose(0, 3, 1, 2).copy()).float() / 255.0
    param = next(model.parameters())
    out = model(x.to(device or param.device, param.dtype))
    preds = non_max_suppression(out[0] if isinstance(out, (tuple, list)) else out, conf_thres=conf, iou_thres=iou,
                                max_det=300)
    results = []
    for det, (_, scale, (px, py)) in zip(preds, boxed):
        det = det.float().cpu().numpy()
        det[:, [0, 2]] = (det[:, [0, 2]] - px) / scale
        det[:, [1, 3]] = (det[:, [1, 3]] - py) / scale
        results.append(det)
    return results


def evaluate_dataset(model, dataset, imgsz: int, conf_threshold: float = 0.25, batch: int = 32,
                     kinds: list[str] | None = None) -> dict:
    """Metrics of `model` over a DetectionDataset (its `load` gives image, classes, boxes);
    `kinds` (one per sample) adds an FP rate per kind of image with no object."""
    was_training = model.training
    model.eval()
    overall = DetectionEvaluator(conf_threshold)
    per_kind: dict[str, DetectionEvaluator] = {}
    for start in range(0, len(dataset), batch):
        items = [dataset.load(i) for i in range(start, min(start + batch, len(dataset)))]
        dets = predict_letterboxed(model, [img for img, _, _ in items], imgsz)
        for offset, ((_, gt_cls, gt_xyxy), det) in enumerate(zip(items, dets)):
            args = (det[:, :4], det[:, 4], det[:, 5].astype(np.int64), gt_xyxy, gt_cls)
            overall.add_image(*args)
            if kinds is not None:
                per_kind.setdefault(kinds[start + offset], DetectionEvaluator(conf_threshold)).add_image(*args)
    model.train(was_training)
    out = overall.results()
    # frame level: a frame with objects counts as found when any detection reaches the confidence
    found = [bool(len(t) and (c >= conf_threshold).any()) for t, c in zip(overall.gt_cls, overall.conf) if len(t)]
    out["frame_recall"] = float(np.mean(found)) if found else 0.0
    out.pop("ap50_per_class", None)
    if kinds is not None:
        out["fp_rate_by_kind"] = {k: ev.results()["fp_rate"] for k, ev in per_kind.items() if ev.negatives.images}
    return out
