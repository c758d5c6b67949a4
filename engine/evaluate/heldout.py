"""Score a detector on the world's held-out frames: precision and recall on work-zone frames,
false-alarm rate on lookalike frames (which hold no objects at all)."""

from __future__ import annotations

from pathlib import Path

import cv2

from engine.metrics.detection import DetectionCounts, match_detections
from engine.models.detector import DetectorSpec, detect
from engine.yolo_format import parse_yolo_labels


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_yolo_folder(model, folder: Path, spec: DetectorSpec, iou_threshold: float = 0.5, batch: int = 32) -> DetectionCounts:
    """Run `model` over `<folder>/images/*.jpg` and match against `<folder>/labels/*.txt`."""
    images = sorted((Path(folder) / "images").glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no images under {folder}/images")
    counts = DetectionCounts()
    for paths in _batches(images, batch):
        rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
        for path, image, dets in zip(paths, rgb, detect(model, rgb, spec)):
            label_file = Path(folder) / "labels" / f"{path.stem}.txt"
            gt_cls, gt_xyxy = parse_yolo_labels(label_file.read_text(), image.shape[1], image.shape[0])
            tp = match_detections(dets.xyxy, dets.conf, dets.cls, gt_xyxy, gt_cls, iou_threshold)
            counts.add_image(tp, len(gt_cls))
    return counts


def evaluate_heldout(model, heldout_dir: Path, spec: DetectorSpec, iou_threshold: float = 0.5) -> dict:
    """Metrics on `heldout/workzone` and `heldout/lookalike` at `spec.conf_threshold`."""
    wz = score_yolo_folder(model, Path(heldout_dir) / "workzone", spec, iou_threshold)
    la = score_yolo_folder(model, Path(heldout_dir) / "lookalike", spec, iou_threshold)
    return {
        "conf_threshold": spec.conf_threshold,
        "iou_threshold": iou_threshold,
        "workzone": {"images": wz.images, "precision": round(wz.precision, 4), "recall": round(wz.recall, 4),
                     "tp": wz.tp, "fp": wz.fp, "fn": wz.fn},
        "lookalike": {"images": la.images, "fp_rate": round(la.image_fp_rate, 4),
                      "fp_per_image": round(la.fp_per_image, 4), "fp": la.fp},
    }
