"""The segmentation training data: a built set's samples (image, mask, kind, weight)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from engine.segment.predict import read_rgb, to_input


class SegmentationDataset(Dataset):
    """Item: (3xSxS normalised image, 1xSxS mask in {0, 1}, authentic (no forged pixel), loss weight)."""

    def __init__(self, root: Path, samples: pd.DataFrame, imgsz: int, augment=None):
        self.root, self.samples, self.imgsz, self.augment = Path(root), samples.reset_index(drop=True), imgsz, augment

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        row = self.samples.iloc[i]
        image = read_rgb(self.root / row["path"])
        if not isinstance(row["mask_path"], str) or not row["mask_path"]:  # authentic: nothing forged
            return image, np.zeros(image.shape[:2], np.uint8)
        mask = cv2.imread(str(self.root / row["mask_path"]), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise OSError(f"cannot read mask {self.root / row['mask_path']}")
        return image, (mask > 0).astype(np.uint8)

    def __getitem__(self, i: int):
        image, mask = self.load(i)
        if self.augment is not None:
            out = self.augment(image=image, mask=mask)
            image, mask = out["image"], out["mask"]
        mask = cv2.resize(mask, (self.imgsz, self.imgsz), interpolation=cv2.INTER_NEAREST)
        return (torch.from_numpy(to_input(image, self.imgsz)), torch.from_numpy(mask[None].astype(np.float32)),
                bool(mask.max() == 0), float(self.samples.iloc[i].get("loss_weight", 1.0)))
