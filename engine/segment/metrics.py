"""Segmentation metrics and the hard-negative rule (pure numpy + OpenCV).

An authentic image is a false positive when, at probability `threshold`, the share of its
pixels called forged exceeds `min_fp_ratio` (seed 002: 0.001 at 0.5) and its largest
connected forged region covers at least `min_area_px` pixels (seed 003: 500 px at 0.75;
`cv2.connectedComponentsWithStats`, 8-connectivity). Both jobs that judge false positives,
`quarry scan` and training's validation, use this rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FpRule:
    threshold: float = 0.75
    min_fp_ratio: float = 0.001
    min_area_px: int = 500


def image_fp_stats(prob: np.ndarray, threshold: float) -> dict:
    """fp_ratio (share of pixels above threshold), regions, largest_region_px, max_prob."""
    binary = (np.asarray(prob) > threshold).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA] if n > 1 else np.zeros(0, np.int64)
    return {"fp_ratio": float(binary.mean()), "regions": int(len(areas)),
            "largest_region_px": int(areas.max()) if len(areas) else 0, "max_prob": float(np.max(prob))}


def is_false_positive(stats: dict, rule: FpRule) -> bool:
    return stats["fp_ratio"] > rule.min_fp_ratio and stats["largest_region_px"] >= rule.min_area_px


class SegmentationEvaluator:
    """Pixel precision / recall / F1 over images with a forgery, and the FP rate (by the rule)
    over authentic images."""

    def __init__(self, rule: FpRule):
        self.rule = rule
        self.tp = self.fp = self.fn = 0
        self.authentic = self.flagged = 0

    def add_image(self, prob: np.ndarray, mask: np.ndarray) -> None:
        pred = np.asarray(prob) > self.rule.threshold
        truth = np.asarray(mask) > 0
        if truth.any():
            self.tp += int((pred & truth).sum())
            self.fp += int((pred & ~truth).sum())
            self.fn += int((~pred & truth).sum())
        else:
            self.authentic += 1
            self.flagged += int(is_false_positive(image_fp_stats(prob, self.rule.threshold), self.rule))

    def results(self) -> dict:
        precision = self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0
        recall = self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "authentic_images": self.authentic,
                "fp_rate": self.flagged / self.authentic if self.authentic else 0.0}
