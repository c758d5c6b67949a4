"""Segmentation evaluation on labelled images: pixel precision / recall / F1 on forgeries, the
FP rate on authentic images by the scan's rule, per slice; one model or a weighted ensemble."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from engine.segment.metrics import FpRule, SegmentationEvaluator


def heldout_images(world_dir: Path) -> pd.DataFrame:
    root = Path(world_dir) / "segmentation"
    index = pd.read_parquet(root / "index.parquet")
    index = index[index["split"] == "heldout"].reset_index(drop=True)
    index["path"] = [str(root / p) for p in index["image"]]
    index["mask_path"] = [str(root / p) if isinstance(p, str) else "" for p in index["mask"]]
    return index


def evaluate_segmentation(models: list, weights: list[float], images: pd.DataFrame, imgsz: int, rule: FpRule,
                          slice_columns: list[str]) -> dict:
    from engine.segment.predict import predict_probabilities, read_rgb

    overall = SegmentationEvaluator(rule)
    per_slice: dict[tuple[str, str], SegmentationEvaluator] = {}
    for row in images.itertuples(index=False):
        image = read_rgb(row.path)
        mask = cv2.imread(row.mask_path, cv2.IMREAD_GRAYSCALE) if row.mask_path else np.zeros(image.shape[:2], np.uint8)
        prob = predict_probabilities(models, [image], imgsz, weights)[0]
        overall.add_image(prob, mask)
        for column in slice_columns:
            value = getattr(row, column, None)
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                per_slice.setdefault((column, str(value)), SegmentationEvaluator(rule)).add_image(prob, mask)
    slices = [{"slice": c, "value": v, **ev.results()} for (c, v), ev in per_slice.items()]
    return {"pixels": overall.results(), "slices": sorted(slices, key=lambda r: -r["fp_rate"])}
