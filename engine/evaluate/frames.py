"""Frame-level evaluation of a detector on labelled images (the world's held-out folders):
object level on the work-zone frames (mAP50, mAP50-95, precision / recall at a confidence),
frame level on all of them (a frame is
predicted positive when any detection reaches the confidence: precision, recall, F1, MCC, FP
rate on frames without objects), per-slice frame metrics (metadata values, worst first),
calibration of detection confidences (ECE before and after a temperature fitted on the other
half of the frames), and the data for curves and galleries."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from engine.metrics.calibration import apply_temperature, fit_temperature, reliability
from engine.metrics.classification import binary_metrics
from engine.metrics.detection import DetectionEvaluator, match_detections
from engine.yolo_format import parse_yolo_labels

MAP_CONF = 0.001


def heldout_frames(heldout_dir: Path) -> pd.DataFrame:
    """The world's held-out frames: path, label path, kind, lookalike_kind and metadata."""
    root = Path(heldout_dir)
    index = pd.read_parquet(root / "index.parquet")
    index["path"] = [str(root / p) for p in index["image"]]
    index["label_path"] = [str(root / Path(p).parent.parent / "labels" / (Path(p).stem + ".txt")) for p in index["image"]]
    return index


def detect_all(model, frames: pd.DataFrame, imgsz: int, tta: bool = False, batch: int = 32) -> list[dict]:
    """Per frame: gt (cls, xyxy) and detections at MAP_CONF (xyxy, conf, cls)."""
    from engine.models.detector import DetectorSpec, detect

    spec = DetectorSpec(source="unused.pt", imgsz=imgsz, conf_threshold=MAP_CONF)
    out = []
    rows = list(frames.itertuples(index=False))
    for start in range(0, len(rows), batch):
        part = rows[start : start + batch]
        images = [cv2.cvtColor(cv2.imread(r.path), cv2.COLOR_BGR2RGB) for r in part]
        for row, image, dets in zip(part, images, detect(model, images, spec, tta=tta)):
            gt_cls, gt_xyxy = parse_yolo_labels(Path(row.label_path).read_text(), image.shape[1], image.shape[0])
            out.append({"gt_cls": gt_cls, "gt_xyxy": gt_xyxy, "xyxy": dets.xyxy, "conf": dets.conf, "cls": dets.cls})
    return out


def _slices(frames: pd.DataFrame, truth, predicted, columns: list[str]) -> list[dict]:
    rows = []
    for column in columns:
        if column not in frames.columns:
            continue
        for value, idx in frames.groupby(column, dropna=True).indices.items():
            m = binary_metrics(truth[idx], predicted[idx])
            rows.append({"slice": column, "value": str(value), "frames": len(idx), "positives": int(truth[idx].sum()),
                         **{k: m[k] for k in ("precision", "recall", "f1", "mcc", "fp_rate")}})
    # worst first: lowest F1 where there are objects, then the highest FP rate
    return sorted(rows, key=lambda r: (r["f1"] if r["positives"] else 1.0, -r["fp_rate"]))


def evaluate_frames(dets: list[dict], frames: pd.DataFrame, conf_threshold: float, iou_threshold: float,
                    slice_columns: list[str], calibration_bins: int = 10, seed: int = 0) -> dict:
    evaluator = DetectionEvaluator(conf_threshold, iou_threshold)  # objects: on the work-zone frames
    workzone = (frames["kind"] == "workzone").to_numpy() if "kind" in frames else np.ones(len(frames), bool)
    truth, predicted, max_conf, missed = [], [], [], []
    det_conf, det_correct, det_frame = [], [], []
    for i, d in enumerate(dets):
        if workzone[i]:
            evaluator.add_image(d["xyxy"], d["conf"], d["cls"], d["gt_xyxy"], d["gt_cls"])
        keep = d["conf"] >= conf_threshold
        truth.append(len(d["gt_cls"]) > 0)
        predicted.append(bool(keep.any()))
        max_conf.append(float(d["conf"].max()) if len(d["conf"]) else 0.0)
        hits = match_detections(d["xyxy"][keep], d["conf"][keep], d["cls"][keep], d["gt_xyxy"], d["gt_cls"], iou_threshold)
        missed.append(len(d["gt_cls"]) - int(hits.sum()))
        calib = d["conf"] >= 0.05  # confidences worth calibrating
        matched = match_detections(d["xyxy"][calib], d["conf"][calib], d["cls"][calib], d["gt_xyxy"], d["gt_cls"],
                                   iou_threshold)
        det_conf += d["conf"][calib].tolist()
        det_correct += matched.tolist()
        det_frame += [i] * int(calib.sum())
    truth, predicted, max_conf, missed = np.array(truth), np.array(predicted), np.array(max_conf), np.array(missed)
    objects = evaluator.results()
    det_conf, det_correct, det_frame = np.array(det_conf), np.array(det_correct, bool), np.array(det_frame, np.int64)
    fit_half = (det_frame % 2) == 0  # temperature fitted on even frames, judged on odd ones
    calibration = {"detections": len(det_conf)}
    if fit_half.any() and (~fit_half).any():
        t = fit_temperature(det_conf[fit_half], det_correct[fit_half])
        before = reliability(det_conf[~fit_half], det_correct[~fit_half], calibration_bins)
        after = reliability(apply_temperature(det_conf[~fit_half], t), det_correct[~fit_half], calibration_bins)
        calibration.update(temperature=t, ece_before=before["ece"], ece_after=after["ece"], bins_before=before["bins"],
                           bins_after=after["bins"])
    pr = []  # object-level precision / recall as the confidence threshold moves (IoU 0.5)
    for threshold in np.linspace(0.05, 0.95, 19):
        ev = DetectionEvaluator(float(threshold), iou_threshold)
        for d in dets:
            if len(d["gt_cls"]):
                ev.add_image(d["xyxy"], d["conf"], d["cls"], d["gt_xyxy"], d["gt_cls"])
        r = ev.results()
        pr.append({"threshold": round(float(threshold), 2), "precision": r["precision"], "recall": r["recall"]})
    by_kind = {}
    if "lookalike_kind" in frames.columns:
        negatives = ~truth
        for kind, idx in frames[negatives].groupby("lookalike_kind").indices.items():
            positions = np.flatnonzero(negatives)[idx]
            by_kind[str(kind)] = {"frames": len(positions), "fp_rate": float(predicted[positions].mean())}
    return {"objects": {k: v for k, v in objects.items() if k != "ap50_per_class"}, "frames": binary_metrics(truth, predicted),
            "slices": _slices(frames.reset_index(drop=True), truth, predicted, slice_columns), "calibration": calibration,
            "pr_curve": pr, "fp_by_kind": by_kind,
            "scores": {"positive": max_conf[truth].tolist(), "negative": max_conf[~truth].tolist()},
            "worst_false_positives": [int(i) for i in np.argsort(-np.where(truth, -1.0, max_conf))[: int((~truth).sum())]],
            "worst_misses": [int(i) for i in np.argsort(-missed, kind="stable")[: int((missed > 0).sum())]]}
