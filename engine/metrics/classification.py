"""Frame-level binary metrics (pure numpy): a frame is predicted positive when the model
raises any detection at the confidence threshold, and is positive when it holds an object."""

from __future__ import annotations

import math

import numpy as np


def confusion(truth, predicted) -> dict[str, int]:
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    return {"tp": int((truth & predicted).sum()), "fp": int((~truth & predicted).sum()),
            "fn": int((truth & ~predicted).sum()), "tn": int((~truth & ~predicted).sum())}


def binary_metrics(truth, predicted) -> dict[str, float]:
    """precision, recall, F1, MCC, FP rate (on negative frames), accuracy; 0 where undefined
    (scikit-learn's `zero_division=0`)."""
    c = confusion(truth, predicted)
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom else 0.0
    n = tp + fp + fn + tn
    return {**c, "precision": precision, "recall": recall, "f1": f1, "mcc": mcc,
            "fp_rate": fp / (fp + tn) if fp + tn else 0.0, "accuracy": (tp + tn) / n if n else 0.0, "frames": n}
