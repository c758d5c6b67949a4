"""How each object kind is drawn. Every drawer paints into an RGB canvas inside a pixel box
and returns the boolean mask of the pixels it painted, so labels come from what was drawn.

Cue kinds (labelled for the detector): cone, barrel, sign, barrier.
Lookalikes (orange, cue-shaped, never labelled): orange_truck, orange_sign, orange_person, glare.
Scenery (never labelled): car, tree, pole.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

CUE_CLASSES: tuple[str, ...] = ("cone", "barrel", "sign", "barrier")
LOOKALIKE_KINDS: tuple[str, ...] = ("orange_truck", "orange_sign", "orange_person", "glare")
SCENERY_KINDS: tuple[str, ...] = ("car", "tree", "pole")

# World size (width_m, height_m) of each kind.
SIZES_M: dict[str, tuple[float, float]] = {
    "cone": (0.45, 0.75),
    "barrel": (0.6, 1.0),
    "sign": (1.0, 2.0),
    "barrier": (1.6, 1.0),
    "orange_truck": (2.4, 2.8),
    "orange_sign": (2.6, 3.0),
    "orange_person": (0.55, 1.75),
    "glare": (0.0, 0.0),  # screen-space, sized in pixels by the scenario
    "car": (1.8, 1.5),
    "tree": (3.0, 6.0),
    "pole": (0.2, 6.0),
}

ORANGE = np.array([245, 110, 20], np.float32)
WHITE = np.array([235, 235, 235], np.float32)
DARK = np.array([30, 30, 32], np.float32)
GREY = np.array([120, 120, 125], np.float32)


class Painter:
    """Paints shapes into `canvas` and remembers the union of painted pixels."""

    def __init__(self, canvas: np.ndarray):
        self.canvas = canvas
        self.mask = np.zeros(canvas.shape[:2], np.uint8)

    def _fill(self, shape: np.ndarray, color: np.ndarray) -> None:
        hit = shape.astype(bool)
        self.canvas[hit] = np.clip(color, 0, 255).astype(np.uint8)
        self.mask |= shape

    def poly(self, points, color) -> None:
        shape = np.zeros_like(self.mask)
        cv2.fillPoly(shape, [np.round(np.asarray(points, np.float64)).astype(np.int32)], 1)
        self._fill(shape, color)

    def rect(self, x1, y1, x2, y2, color) -> None:
        self.poly([(x1, y1), (x2, y1), (x2, y2), (x1, y2)], color)

    def ellipse(self, cx, cy, rx, ry, color) -> None:
        shape = np.zeros_like(self.mask)
        cv2.ellipse(shape, (round(cx), round(cy)), (max(1, round(rx)), max(1, round(ry))), 0, 0, 360, 1, -1)
        self._fill(shape, color)


def _cone(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    cx, base_y = (x1 + x2) / 2, y2 - 0.12 * h
    p.poly([(cx - 0.06 * w, y1), (cx + 0.06 * w, y1), (x2 - 0.12 * w, base_y), (x1 + 0.12 * w, base_y)], ORANGE * tone)

    def edge(y):  # half-width of the cone body at row y
        return 0.06 * w + (0.38 * w - 0.06 * w) * (y - y1) / max(base_y - y1, 1e-6)

    ya, yb = y1 + 0.35 * h, y1 + 0.5 * h
    p.poly([(cx - edge(ya), ya), (cx + edge(ya), ya), (cx + edge(yb), yb), (cx - edge(yb), yb)], WHITE * tone)
    p.rect(x1, base_y, x2, y2, DARK)


def _barrel(p: Painter, x1, y1, x2, y2, tone):
    h = y2 - y1
    p.ellipse((x1 + x2) / 2, y1 + 0.06 * h, (x2 - x1) / 2, 0.06 * h, ORANGE * tone)
    p.rect(x1, y1 + 0.06 * h, x2, y2, ORANGE * tone)
    for top, bottom in ((0.25, 0.38), (0.55, 0.68)):
        p.rect(x1, y1 + top * h, x2, y1 + bottom * h, WHITE * tone)


def _sign(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    p.rect(cx - 0.05 * w, y1 + 0.5 * h, cx + 0.05 * w, y2, GREY * tone)
    p.poly([(cx, y1), (x2, y1 + 0.3 * h), (cx, y1 + 0.6 * h), (x1, y1 + 0.3 * h)], ORANGE * tone)
    p.rect(cx - 0.15 * w, y1 + 0.22 * h, cx + 0.15 * w, y1 + 0.38 * h, DARK)


def _barrier(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    for lx in (x1 + 0.1 * w, x2 - 0.16 * w):
        p.rect(lx, y1 + 0.45 * h, lx + 0.06 * w, y2, GREY * tone)
    board_bottom = y1 + 0.5 * h
    p.rect(x1, y1, x2, board_bottom, ORANGE * tone)
    stripe = w / 6
    for i in range(0, 6, 2):  # white diagonal stripes across the board
        sx = x1 + i * stripe
        p.poly([(sx, board_bottom), (sx + stripe * 0.5, y1), (sx + stripe * 1.5, y1), (sx + stripe, board_bottom)], WHITE * tone)


def _orange_truck(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    p.rect(x1, y1, x2, y2 - 0.12 * h, ORANGE * tone)
    p.rect(x1, y1 + 0.55 * h, x2, y1 + 0.62 * h, WHITE * tone)  # reflective tape
    p.rect(x1 + 0.05 * w, y1 + 0.1 * h, x2 - 0.05 * w, y1 + 0.3 * h, DARK)  # rear door seam
    for lx in (x1 + 0.04 * w, x2 - 0.16 * w):
        p.rect(lx, y1 + 0.68 * h, lx + 0.12 * w, y1 + 0.76 * h, np.array([200, 20, 20], np.float32) * tone)
    for wx in (x1 + 0.2 * w, x2 - 0.2 * w):
        p.ellipse(wx, y2 - 0.08 * h, 0.12 * w, 0.08 * h, DARK)


def _orange_sign(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    for lx in (x1 + 0.15 * w, x2 - 0.2 * w):
        p.rect(lx, y1 + 0.5 * h, lx + 0.05 * w, y2, GREY * tone)
    p.rect(x1, y1, x2, y1 + 0.55 * h, ORANGE * tone)
    for top in (0.15, 0.32):
        p.rect(x1 + 0.12 * w, y1 + top * h, x2 - 0.12 * w, y1 + (top + 0.08) * h, WHITE * tone)


def _orange_person(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    for lx in (cx - 0.3 * w, cx + 0.05 * w):
        p.rect(lx, y1 + 0.55 * h, lx + 0.25 * w, y2, np.array([40, 50, 90], np.float32) * tone)
    p.rect(x1 + 0.05 * w, y1 + 0.2 * h, x2 - 0.05 * w, y1 + 0.58 * h, ORANGE * tone)
    p.rect(x1 + 0.05 * w, y1 + 0.36 * h, x2 - 0.05 * w, y1 + 0.42 * h, WHITE * tone)
    p.ellipse(cx, y1 + 0.1 * h, 0.3 * w, 0.1 * h, np.array([205, 160, 120], np.float32) * tone)


def _glare(p: Painter, x1, y1, x2, y2, tone):
    cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2
    for frac, color in ((1.0, (250, 150, 40)), (0.7, (255, 190, 80)), (0.4, (255, 235, 170))):
        p.ellipse(cx, cy, r * frac, r * frac, np.array(color, np.float32) * min(1.0, tone * 1.1))


def _car(p: Painter, x1, y1, x2, y2, tone, color=(70, 90, 140)):
    w, h = x2 - x1, y2 - y1
    body = np.array(color, np.float32) * tone
    p.rect(x1 + 0.12 * w, y1, x2 - 0.12 * w, y1 + 0.4 * h, body * 0.8)
    p.rect(x1 + 0.2 * w, y1 + 0.08 * h, x2 - 0.2 * w, y1 + 0.35 * h, DARK + 20)
    p.rect(x1, y1 + 0.4 * h, x2, y2 - 0.12 * h, body)
    for wx in (x1 + 0.18 * w, x2 - 0.18 * w):
        p.ellipse(wx, y2 - 0.08 * h, 0.1 * w, 0.08 * h, DARK)


def _tree(p: Painter, x1, y1, x2, y2, tone):
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2
    p.rect(cx - 0.07 * w, y1 + 0.55 * h, cx + 0.07 * w, y2, np.array([90, 60, 35], np.float32) * tone)
    p.ellipse(cx, y1 + 0.33 * h, 0.5 * w, 0.33 * h, np.array([40, 110, 45], np.float32) * tone)


def _pole(p: Painter, x1, y1, x2, y2, tone):
    p.rect(x1, y1, x2, y2, GREY * tone * 0.8)


DRAWERS: dict[str, Callable] = {
    "cone": _cone,
    "barrel": _barrel,
    "sign": _sign,
    "barrier": _barrier,
    "orange_truck": _orange_truck,
    "orange_sign": _orange_sign,
    "orange_person": _orange_person,
    "glare": _glare,
    "car": _car,
    "tree": _tree,
    "pole": _pole,
}


def draw_object(canvas: np.ndarray, kind: str, box: tuple[float, float, float, float], tone: float = 1.0, **style) -> np.ndarray:
    """Draw one object of `kind` inside `box` (pixels, may overhang the frame); return its mask."""
    painter = Painter(canvas)
    DRAWERS[kind](painter, *box, tone, **style)
    return painter.mask.astype(bool)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight pixel box (x1, y1, x2, y2), x2/y2 exclusive, of a boolean mask; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1
