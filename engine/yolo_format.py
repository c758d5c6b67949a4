"""YOLO label files: one `class cx cy w h` line per box, normalised to the image size."""

from __future__ import annotations

import numpy as np


def format_yolo_labels(cls: np.ndarray, xyxy: np.ndarray, width: int, height: int) -> str:
    """Label-file text for boxes in pixels; an empty string (background image) for no boxes."""
    lines = []
    for c, (x1, y1, x2, y2) in zip(np.asarray(cls).reshape(-1), np.asarray(xyxy, np.float64).reshape(-1, 4)):
        lines.append(f"{int(c)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}")
    return "".join(line + "\n" for line in lines)


def parse_yolo_labels(text: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (n,), xyxy pixel boxes (n, 4)) from label-file text."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float64)
    values = np.array(rows, np.float64)
    if values.shape[1] != 5:
        raise ValueError(f"YOLO label lines need 5 values (class cx cy w h), got {values.shape[1]}")
    cx, cy, w, h = values[:, 1] * width, values[:, 2] * height, values[:, 3] * width, values[:, 4] * height
    return values[:, 0].astype(np.int64), np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
