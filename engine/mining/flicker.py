"""Flicker: detections without temporal support (Jin et al., CVPR 2018, "Unsupervised hard
example mining from videos"). A real object seen in one frame is seen again a moment later;
a detection that no box of the same class matches (IoU >= `iou_min`) in any of the
`window_rows` sampled frames before or after it is likely a false positive. Pure numpy, on
one video's timeline sorted by frame.
"""

from __future__ import annotations

import json

import numpy as np

from engine.metrics.detection import box_iou


def parse_boxes(boxes_json: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class names (n,), confidences (n,), xyxy (n, 4)) of one timeline row's `boxes_json`."""
    boxes = json.loads(boxes_json) if boxes_json else []
    if not boxes:
        return np.zeros(0, object), np.zeros(0), np.zeros((0, 4))
    names = np.array([b[0] for b in boxes], object)
    return names, np.array([b[1] for b in boxes], np.float64), np.array([b[2:6] for b in boxes], np.float64)


def isolated_detections(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], window_rows: int, iou_min: float,
                        min_conf: float) -> list[np.ndarray]:
    """For each row (cls, conf, xyxy), a bool per box: True when the box has conf >= `min_conf`
    and no box of the same class in the `window_rows` rows on either side overlaps it with
    IoU >= `iou_min` (neighbours count at any confidence: a weak repeat is still support).
    A row without any neighbour in its window (a one-frame video) flags nothing."""
    flags = []
    n = len(rows)
    for i, (cls, conf, xyxy) in enumerate(rows):
        flag = np.zeros(len(cls), bool)
        neighbours = [rows[j] for j in range(max(0, i - window_rows), min(n, i + window_rows + 1)) if j != i]
        if neighbours and len(cls):
            supported = np.zeros(len(cls), bool)
            for n_cls, _, n_xyxy in neighbours:
                if len(n_cls):
                    same = cls[:, None] == n_cls[None, :]
                    supported |= ((box_iou(xyxy, n_xyxy) >= iou_min) & same).any(axis=1)
            flag = (conf >= min_conf) & ~supported
        flags.append(flag)
    return flags


def flicker_columns(boxes_json: list[str], window_rows: int, iou_min: float, min_conf: float) -> dict:
    """Timeline columns for flicker mining: `n_isolated`, `isolated_boxes_json` (the isolated
    boxes, in boxes_json's format) and `flicker_score` (their highest confidence, 0 if none)."""
    rows = [parse_boxes(text) for text in boxes_json]
    flags = isolated_detections(rows, window_rows, iou_min, min_conf)
    isolated = []
    for text, flag in zip(boxes_json, flags):
        boxes = json.loads(text) if text else []
        isolated.append([box for box, is_isolated in zip(boxes, flag) if is_isolated])
    return {"n_isolated": np.array([int(f.sum()) for f in flags], np.int64),
            "isolated_boxes_json": [json.dumps(b) for b in isolated],
            "flicker_score": np.array([max((b[1] for b in boxes), default=0.0) for boxes in isolated], np.float64)}
