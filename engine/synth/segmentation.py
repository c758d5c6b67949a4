"""The segmentation variant of the world: authentic images and copy-move forgeries with masks.

Authentic kinds mirror the false-positive sources of seed 002/003: natural textures,
cell-like blobs, high-contrast edges, and dark images (mean brightness < 30). Every image
carries sensor noise.

Forgeries copy a patch of an image's content to another place in it, enlarged 1.3-2x as
forgers resize what they paste; the pasted area's sensor noise is weaker (0.3x: it came from
another source), the local trace a detector learns; the mask marks the pasted area. Size bands follow the
sampling weights of seed 003: tiny < 1 %, small 1-5 %, large > 5 %.

Some authentic images (`artifact_fraction`) have a natural smooth patch (defocus, a smudge,
a re-saved label; an ellipse, Gaussian-blurred): the same kind of trace without a forgery.
A model trained without them fires there: they are the world's hard negatives, as seed 002's
"natural texture boundaries, dust, JPEG artifacts" are in real data.
"""

from __future__ import annotations

import cv2
import numpy as np

AUTHENTIC_KINDS = ("texture", "cells", "edges", "dark")
FORGERY_BANDS = {"tiny": (0.003, 0.009), "small": (0.012, 0.045), "large": (0.06, 0.15)}
DARK_MEAN_MAX = 30.0  # seed 003: "dark images" have mean brightness below 30


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.zeros((size, size, 3), np.float32)
    for scale in (4, 16, 64):
        noise = rng.normal(0, 1, (size // scale + 2, size // scale + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * (scale / 8)
    img = (img - img.min()) / (np.ptp(img) + 1e-6)
    return img * rng.uniform(120, 220) + rng.uniform(10, 40)


def _cells(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), rng.uniform(200, 240, 3), np.float32)
    for _ in range(rng.integers(12, 40)):
        cx, cy = rng.integers(0, size, 2)
        r = rng.uniform(size * 0.03, size * 0.09)
        color = rng.uniform(120, 200, 3)
        cv2.ellipse(img, (int(cx), int(cy)), (int(r), int(r * rng.uniform(0.6, 1.0))), float(rng.uniform(0, 180)), 0, 360, color.tolist(), -1)
        cv2.circle(img, (int(cx), int(cy)), max(1, int(r * 0.35)), (color * 0.45).tolist(), -1)
    return cv2.GaussianBlur(img, (3, 3), 0.8)


def _edges(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size, 3), rng.uniform(0, 255), np.uint8)
    for _ in range(rng.integers(6, 16)):
        x1, y1 = rng.integers(0, size, 2)
        x2, y2 = x1 + rng.integers(4, size // 2), y1 + rng.integers(2, size // 3)
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), [float(rng.choice([0, 255]))] * 3, -1)
    for _ in range(rng.integers(2, 6)):  # text-like strokes, as annotations on a slide
        x, y = rng.integers(0, size - 20, 2)
        cv2.putText(img, "AB12", (int(x), int(y)), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (20, 20, 20), 1)
    return img.astype(np.float32)


SENSOR_NOISE_SIGMA = (8.0, 14.0)  # grey levels, per image (a high-ISO sensor)
PASTE_NOISE_GAIN = 0.3  # the pasted area's noise, relative to the image's: it came from another source


def authentic_content(rng: np.random.Generator, kind: str, size_px: int) -> np.ndarray:
    """The noise-free content (float RGB) of an authentic image of `kind`."""
    if kind == "dark":
        base = [_texture, _cells, _edges][rng.integers(3)](rng, size_px)
        return base * (rng.uniform(8.0, 24.0) / max(base.mean(), 1e-6))
    return {"texture": _texture, "cells": _cells, "edges": _edges}[kind](rng, size_px)


def add_sensor_noise(rng: np.random.Generator, content: np.ndarray, gain: np.ndarray | None = None) -> np.ndarray:
    """uint8 image: `content` plus grey sensor noise, scaled per pixel by `gain` (default 1)."""
    noise = rng.normal(0, rng.uniform(*SENSOR_NOISE_SIGMA), content.shape[:2]).astype(np.float32)
    if gain is not None:
        noise *= gain
    return np.clip(content + noise[..., None], 0, 255).astype(np.uint8)


def make_authentic(rng: np.random.Generator, kind: str, size_px: int) -> np.ndarray:
    """An authentic RGB uint8 image of `kind` with sensor noise; `dark` images have mean
    brightness < 30."""
    return add_sensor_noise(rng, authentic_content(rng, kind, size_px))


def add_smooth_artifact(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """A natural smooth patch: an ellipse of the image blurred (sigma 1.2-2 px), 2-8 % of it."""
    size_h, size_w = image.shape[:2]
    area = rng.uniform(0.02, 0.08) * size_h * size_w
    ry = np.sqrt(area / np.pi / rng.uniform(0.6, 1.6))
    rx = area / np.pi / ry
    cy, cx = rng.uniform(ry, size_h - ry), rng.uniform(rx, size_w - rx)
    region = np.zeros((size_h, size_w), np.uint8)
    cv2.ellipse(region, (int(cx), int(cy)), (int(rx), int(ry)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
    blurred = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(1.2, 2.0)))
    return np.where(region[..., None] > 0, blurred, image)


def make_copy_move(rng: np.random.Generator, content: np.ndarray, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Copy a rectangle of the noise-free `content` elsewhere in it, enlarged 1.3-2x (sometimes
    flipped); add sensor noise, weaker in the pasted area (it came from another source).
    Return (forged uint8 image, uint8 mask of the pasted area). The patch area is drawn from
    `FORGERY_BANDS[band]` (fraction of the image)."""
    size_h, size_w = content.shape[:2]
    area = rng.uniform(*FORGERY_BANDS[band]) * size_h * size_w
    aspect = rng.uniform(0.6, 1.6)
    ph = int(np.clip(round(np.sqrt(area / aspect)), 2, size_h // 2))
    pw = int(np.clip(round(area / ph), 2, size_w // 2))
    sy, sx = rng.integers(0, size_h - ph), rng.integers(0, size_w - pw)
    for _ in range(50):  # a destination that does not overlap the source
        dy, dx = rng.integers(0, size_h - ph), rng.integers(0, size_w - pw)
        if abs(dy - sy) >= ph or abs(dx - sx) >= pw:
            break
    forged = content.copy()
    scale = rng.uniform(1.3, 2.0)  # the forger enlarges what they paste
    sh, sw = min(size_h - sy, max(2, round(ph / scale))), min(size_w - sx, max(2, round(pw / scale)))
    patch = cv2.resize(content[sy : sy + sh, sx : sx + sw], (pw, ph), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:  # forgers often flip the copied region
        patch = patch[:, ::-1]
    forged[dy : dy + ph, dx : dx + pw] = patch
    mask = np.zeros((size_h, size_w), np.uint8)
    mask[dy : dy + ph, dx : dx + pw] = 1
    gain = np.where(mask > 0, PASTE_NOISE_GAIN, 1.0).astype(np.float32)
    return add_sensor_noise(rng, forged, gain), mask
