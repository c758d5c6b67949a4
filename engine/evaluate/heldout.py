"""Score a detector on the world's held-out frames: precision, recall and mAP on work-zone
frames, false-alarm rate on lookalike frames (which hold no objects at all)."""

from __future__ import annotations

from pathlib import Path

import cv2

from engine.metrics.detection import DetectionEvaluator
from engine.models.detector import DetectorSpec, detect
from engine.yolo_format import parse_yolo_labels

MAP_CONF = 0.001  # detections kept for mAP, as Ultralytics' and COCO's validators keep them


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def evaluate_yolo_folder(model, folder: Path, spec: DetectorSpec, iou_threshold: float = 0.5, batch: int = 32) -> dict:
    """Run `model` over `<folder>/images/*.jpg` against `<folder>/labels/*.txt`: mAP50,
    mAP50-95, and counts at `spec.conf_threshold` and `iou_threshold`."""
    images = sorted((Path(folder) / "images").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no images under {folder}/images")
    evaluator = DetectionEvaluator(spec.conf_threshold, iou_threshold)
    low = spec.model_copy(update={"conf_threshold": min(MAP_CONF, spec.conf_threshold)})
    for paths in _batches(images, batch):
        rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        for path, image, dets in zip(paths, rgb, detect(model, rgb, low)):
            label_file = Path(folder) / "labels" / f"{path.stem}.txt"
            gt_cls, gt_xyxy = parse_yolo_labels(label_file.read_text(), image.shape[1], image.shape[0])
            evaluator.add_image(dets.xyxy, dets.conf, dets.cls, gt_xyxy, gt_cls)
    return evaluator.results()


def evaluate_heldout(model, heldout_dir: Path, spec: DetectorSpec, iou_threshold: float = 0.5) -> dict:
    """Metrics on `heldout/workzone` and `heldout/lookalike` at `spec.conf_threshold`."""
    wz = evaluate_yolo_folder(model, Path(heldout_dir) / "workzone", spec, iou_threshold)
    la = evaluate_yolo_folder(model, Path(heldout_dir) / "lookalike", spec, iou_threshold)
    return {
        "conf_threshold": spec.conf_threshold,
        "iou_threshold": iou_threshold,
        "workzone": {"images": wz["images"], "precision": round(wz["precision"], 4), "recall": round(wz["recall"], 4),
                     "map50": round(wz["map50"], 4), "map50_95": round(wz["map50_95"], 4),
                     "tp": wz["tp"], "fp": wz["fp"], "fn": wz["fn"]},
        "lookalike": {"images": la["images"], "fp_rate": round(la["fp_rate"], 4),
                      "fp_per_image": round(la["fp_per_negative_image"], 4), "fp": la["fp"]},
    }
