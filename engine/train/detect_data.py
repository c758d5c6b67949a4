"""The detection training data: samples from a built set (`samples.parquet`), letterboxed to
a square `imgsz`, augmented, collated into the batch Ultralytics' loss takes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from engine.yolo_format import parse_yolo_labels

PAD_VALUE = 114  # Ultralytics' letterbox grey


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio so the long side is `size`, pad to size x size.
    Returns (image, scale, (pad_x, pad_y)): a point x maps to x * scale + pad_x."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = round(w * scale), round(h * scale)
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    pad_x, pad_y = (size - nw) // 2, (size - nh) // 2
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[pad_y : pad_y + nh, pad_x : pad_x + nw] = resized
    return out, scale, (pad_x, pad_y)


def load_samples(root: Path, split: str) -> pd.DataFrame:
    """The rows of a built set's split (path, label_path, kind, weight, loss_weight ...)."""
    table = Path(root) / "samples.parquet"
    if not table.is_file():
        raise FileNotFoundError(f"{table}: no built set there (run `quarry build` first)")
    samples = pd.read_parquet(table)
    return samples[samples["split"] == split].reset_index(drop=True)


class DetectionDataset(Dataset):
    """Item: (CHW float image in [0, 1], class ids (n,), boxes (n, 4) normalised xywh of the
    letterboxed image, loss weight, is_negative)."""

    def __init__(self, root: Path, samples: pd.DataFrame, imgsz: int, augment=None):
        self.root, self.samples, self.imgsz, self.augment = Path(root), samples, imgsz, augment

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RGB image, class ids, pixel xyxy boxes) of sample i, before letterboxing."""
        row = self.samples.iloc[i]
        bgr = cv2.imread(str(self.root / row["path"]))
        if bgr is None:
            raise OSError(f"cannot read {self.root / row['path']}")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        cls, xyxy = parse_yolo_labels((self.root / row["label_path"]).read_text(), image.shape[1], image.shape[0])
        return image, cls, xyxy

    def __getitem__(self, i: int):
        image, cls, xyxy = self.load(i)
        h, w = image.shape[:2]
        xyxy = np.clip(xyxy, 0, [w, h, w, h])
        if self.augment is not None:
            out = self.augment(image=image, bboxes=xyxy.tolist(), class_labels=cls.tolist())
            image = out["image"]
            xyxy = np.asarray(out["bboxes"], np.float64).reshape(-1, 4)
            cls = np.asarray(out["class_labels"], np.int64)
        boxed, scale, (px, py) = letterbox(image, self.imgsz)
        xyxy = xyxy * scale + [px, py, px, py]
        xywh = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2, xyxy[:, 2] - xyxy[:, 0],
                         xyxy[:, 3] - xyxy[:, 1]], axis=1) / self.imgsz if len(xyxy) else np.zeros((0, 4))
        row = self.samples.iloc[i]
        tensor = torch.from_numpy(np.ascontiguousarray(boxed.transpose(2, 0, 1))).float() / 255.0
        return (tensor, torch.as_tensor(cls, dtype=torch.float32), torch.as_tensor(xywh, dtype=torch.float32),
                float(row.get("loss_weight", 1.0)), len(cls) == 0)


def collate(items: list) -> dict:
    """Ultralytics' batch: img (B,3,S,S), cls (n,1), bboxes (n,4) normalised xywh, batch_idx (n,);
    plus loss_weight (B,) and negative (B,) for Quarry's loss."""
    images, cls, boxes, weights, negative = zip(*items)
    batch_idx = torch.cat([torch.full((len(c),), i, dtype=torch.float32) for i, c in enumerate(cls)])
    return {"img": torch.stack(images), "cls": torch.cat(cls).view(-1, 1), "bboxes": torch.cat(boxes).view(-1, 4),
            "batch_idx": batch_idx, "loss_weight": torch.tensor(weights, dtype=torch.float32),
            "negative": torch.tensor(negative, dtype=torch.bool)}
