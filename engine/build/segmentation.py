"""The segmentation training set (seeds 002, 003): forged images with their masks, and hard
negatives (authentic images the model flags) with all-zero masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from engine.build.config import BuildConfig
from engine.build.dedup import split_of
from engine.build.detection import _place
from engine.config import ConfigError
from engine.storage import atomic_path


def build_segmentation_set(cfg: BuildConfig) -> dict:
    s, out = cfg.segment, Path(cfg.out_dir)
    if not Path(s.index).is_file():
        raise ConfigError(f"segment.index = {str(s.index)!r}: no such table")
    index = pd.read_parquet(s.index)
    if "split" in index:  # never train on the world's held-out images
        index = index[index["split"] == "train"]
    root = Path(s.index).parent
    forged = index[index["kind"] == "forged"].copy()
    forged["source_image"] = [str(root / p) for p in forged["image"]]
    forged["source_mask"] = [str(root / p) for p in forged["mask"]]
    if s.hard_negatives is None:
        negatives = index[index["kind"] == "authentic"].copy()
        negatives["source_image"] = [str(root / p) for p in negatives["image"]]
    else:
        if not Path(s.hard_negatives).is_file():
            raise ConfigError(f"segment.hard_negatives = {str(s.hard_negatives)!r}: no such table")
        negatives = pd.read_parquet(s.hard_negatives)
        column = "image" if "image" in negatives.columns else "path"
        base = Path(s.hard_negatives).parent
        negatives["source_image"] = [p if Path(p).is_absolute() else str(base / p) for p in negatives[column]]
    negatives = negatives.assign(kind="hard_negative", source_mask="", forgery_area_frac=0.0)
    samples = pd.concat([forged.assign(kind="forged"), negatives], ignore_index=True)
    samples["name"] = [Path(p).stem for p in samples["source_image"]]
    if samples["name"].duplicated().any():
        raise ConfigError("segmentation images must have distinct file names")
    samples["split"] = [split_of(n, cfg.val_fraction, cfg.seed) for n in samples["name"]]
    shutil.rmtree(out / "images", ignore_errors=True)
    shutil.rmtree(out / "masks", ignore_errors=True)
    errors, keep = [], []
    for row in samples.itertuples(index=False):
        image = Path(row.source_image)
        if not image.is_file():
            errors.append({"path": str(image), "reason": "image not found"})
            keep.append(False)
            continue
        _place(image, out / "images" / row.split / f"{row.name}.png", cfg.link)
        target = out / "masks" / row.split / f"{row.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if row.source_mask:
            _place(Path(row.source_mask), target, cfg.link)
        else:  # a hard negative: nothing is forged
            size = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
            with atomic_path(target) as tmp:
                cv2.imwrite(str(tmp), np.zeros(size, np.uint8))
        keep.append(True)
    samples = samples[np.array(keep, bool)].reset_index(drop=True)
    samples["path"] = [f"images/{s}/{n}.png" for s, n in zip(samples["split"], samples["name"])]
    samples["mask_path"] = [f"masks/{s}/{n}.png" for s, n in zip(samples["split"], samples["name"])]
    samples["loss_weight"] = 1.0
    return {"samples": samples, "duplicates": pd.DataFrame(columns=["name", "duplicate_of"]),
            "errors": pd.DataFrame(errors, columns=["path", "reason"])}
