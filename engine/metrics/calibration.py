"""Calibration of detection confidences (pure numpy): expected calibration error, the
reliability diagram's bins, and temperature scaling fitted by maximum likelihood.

A detection's confidence is a probability that it is right (a true positive at IoU 0.5).
Temperature scaling divides its logit by T: p' = sigmoid(logit(p) / T); T > 1 softens
over-confident scores. T is fitted on one half of the frames and judged on the other."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def reliability(conf, correct, bins: int = 10) -> dict:
    """Per equal-width confidence bin: count, mean confidence, accuracy; and the ECE
    (count-weighted mean |accuracy - confidence|)."""
    conf, correct = np.asarray(conf, np.float64), np.asarray(correct, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            gap = abs(correct[m].mean() - conf[m].mean())
            ece += m.sum() / len(conf) * gap
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(m.sum()),
                         "confidence": float(conf[m].mean()), "accuracy": float(correct[m].mean())})
    return {"ece": float(ece) if len(conf) else 0.0, "bins": rows}


def apply_temperature(conf, temperature: float) -> np.ndarray:
    p = np.clip(np.asarray(conf, np.float64), EPS, 1 - EPS)
    return 1.0 / (1.0 + np.exp(-np.log(p / (1 - p)) / temperature))


def fit_temperature(conf, correct, low: float = 0.05, high: float = 20.0) -> float:
    """T minimising the binary negative log-likelihood (golden-section search on log T)."""
    correct = np.asarray(correct, np.float64)

    def nll(log_t: float) -> float:
        p = np.clip(apply_temperature(conf, np.exp(log_t)), EPS, 1 - EPS)
        return float(-(correct * np.log(p) + (1 - correct) * np.log(1 - p)).mean())

    a, b = np.log(low), np.log(high)
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if nll(c) < nll(d):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))
