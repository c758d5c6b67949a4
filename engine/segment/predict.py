"""Running an smp model on images: ImageNet normalisation at a square size, probabilities
resized back to each image's own size."""

from __future__ import annotations

import cv2
import numpy as np
import torch

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def read_rgb(path: str) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OSError(f"cannot read as an image: {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def to_input(image: np.ndarray, imgsz: int) -> np.ndarray:
    """(3, S, S) float32: resized (square) and normalised as ImageNet-trained encoders expect."""
    resized = cv2.resize(image, (imgsz, imgsz), interpolation=cv2.INTER_AREA)
    return ((resized.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


@torch.no_grad()
def predict_probabilities(model, images: list[np.ndarray], imgsz: int, weights=None) -> list[np.ndarray]:
    """Forgery probability maps at each image's size. `model` may be a list of models with
    `weights`: their weighted mean probability (seed 002's ensemble)."""
    models = model if isinstance(model, (list, tuple)) else [model]
    weights = np.ones(len(models)) if weights is None else np.asarray(weights, np.float64)
    param = next(models[0].parameters())
    x = torch.from_numpy(np.stack([to_input(img, imgsz) for img in images])).to(param.device)
    prob = sum(w * torch.sigmoid(m.eval()(x)[:, 0]).float().cpu().numpy() for m, w in zip(models, weights)) / weights.sum()
    return [cv2.resize(p, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR) for p, img in zip(prob, images)]
