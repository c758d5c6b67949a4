"""Pixels for one frame of a scenario, with the labels of what was drawn."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.synth.camera import Camera
from engine.synth.scenario import Scenario, visible_objects, zone_state
from engine.synth.shapes import CUE_CLASSES, draw_object, mask_box

DAYTIME_GAIN = {"day": 1.0, "dusk": 0.72, "night": 0.42}
DASH_PERIOD_M, DASH_LENGTH_M = 9.0, 3.0
MIN_LABEL_PX = 3  # boxes narrower or shorter than this after clipping to the frame are not labelled


@dataclass(frozen=True)
class FrameLabel:
    """A drawn object: kind, whether it is a work-zone cue, and its pixel box (x2/y2 exclusive)."""

    kind: str
    is_cue: bool
    box: tuple[int, int, int, int]

    @property
    def class_id(self) -> int:
        return CUE_CLASSES.index(self.kind) if self.is_cue else -1


def render_background(scenario: Scenario, camera: Camera) -> np.ndarray:
    """Sky, ground, road surface and (urban) skyline: everything that does not move."""
    w, h = camera.width_px, camera.height_px
    horizon = int(round(camera.horizon_y))
    img = np.zeros((h, w, 3), np.float32)
    sky_top, sky_low = np.array([90, 140, 210], np.float32), np.array([185, 205, 230], np.float32)
    if scenario.weather in ("overcast", "rain", "fog"):
        sky_top, sky_low = np.array([150, 155, 165], np.float32), np.array([190, 192, 198], np.float32)
    ramp = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = sky_top * (1 - ramp) + sky_low * ramp
    ground = {"highway": (80, 120, 60), "urban": (110, 110, 108), "rural": (105, 115, 55)}[scenario.scene]
    img[horizon:] = ground
    if scenario.scene == "urban":  # a block skyline on both sides
        rng = np.random.default_rng(scenario.noise_seed + 1)
        x = 0
        while x < w:
            bw = int(rng.integers(w // 16, w // 6))
            if abs(x + bw / 2 - w / 2) > w * 0.18:
                top = int(horizon - rng.integers(h // 12, h // 4))
                img[top:horizon, x : x + bw] = rng.integers(70, 140, 3)
            x += bw
    left, right = -7.5, 4.0  # road edges, metres from our lane centre
    near = 1.0
    pts = [camera.ground_point(left, near), camera.ground_point(right, near), (w / 2 + 0.5, horizon + 0.5), (w / 2 - 0.5, horizon + 0.5)]
    cv2.fillPoly(img, [np.round(np.array(pts)).astype(np.int32)], (70, 70, 72))
    for edge_x in (left + 0.2, right - 0.3):  # solid edge lines
        p_near, p_far = camera.ground_point(edge_x, near), camera.ground_point(edge_x, 400.0)
        cv2.line(img, tuple(map(round, p_near)), tuple(map(round, p_far)), (215, 215, 215), 1)
    return img


def _draw_lane_dashes(img: np.ndarray, camera: Camera, camera_m: float) -> None:
    z = DASH_PERIOD_M - (camera_m % DASH_PERIOD_M)
    while z < 80.0:
        for lane_x in (-1.75,):
            a = camera.ground_point(lane_x - 0.08, max(z, 1.0))
            b = camera.ground_point(lane_x + 0.08, max(z, 1.0))
            c = camera.ground_point(lane_x + 0.08, z + DASH_LENGTH_M)
            d = camera.ground_point(lane_x - 0.08, z + DASH_LENGTH_M)
            cv2.fillPoly(img, [np.round(np.array([a, b, c, d])).astype(np.int32)], (225, 225, 225))
        z += DASH_PERIOD_M


def _apply_conditions(img: np.ndarray, scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    if scenario.weather == "fog":
        img = img * 0.45 + np.array([200, 202, 205], np.float32) * 0.55
    gain = DAYTIME_GAIN[scenario.daytime]
    img = img * gain
    if scenario.daytime == "dusk":
        img = img * np.array([1.08, 0.95, 0.85], np.float32)
    if scenario.weather == "rain":  # bright slanted streaks
        h, w = img.shape[:2]
        for _ in range(int(w * h / 400)):
            x, y = rng.integers(0, w), rng.integers(0, h)
            cv2.line(img, (int(x), int(y)), (int(x) - 2, int(y) + 7), (200 * gain,) * 3, 1)
    return img


def render_frame(scenario: Scenario, camera: Camera, frame: int, fps: float, background: np.ndarray | None = None):
    """Render frame number `frame`; return (RGB uint8 image, labels, ground-truth zone state)."""
    t_s = frame / fps
    camera_m = scenario.camera_m(t_s)
    img = (render_background(scenario, camera) if background is None else background).copy()
    _draw_lane_dashes(img, camera, camera_m)
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    labels: list[FrameLabel] = []
    scenery = {"car", "tree", "pole"}
    for obj, box, _ in visible_objects(scenario, camera, t_s):
        style = {"color": obj.color} if obj.kind == "car" and obj.color else {}
        mask = draw_object(canvas, obj.kind, box, obj.tone, **style)
        drawn = mask_box(mask)
        if obj.kind in scenery or drawn is None:
            continue
        if drawn[2] - drawn[0] < MIN_LABEL_PX or drawn[3] - drawn[1] < MIN_LABEL_PX:
            continue
        labels.append(FrameLabel(obj.kind, obj.kind in CUE_CLASSES, drawn))
    rng = np.random.default_rng([scenario.noise_seed, frame])
    out = _apply_conditions(canvas.astype(np.float32), scenario, rng)
    out += rng.normal(0.0, 3.0, out.shape).astype(np.float32)  # sensor noise
    return np.clip(out, 0, 255).astype(np.uint8), labels, zone_state(scenario.zone_m, camera_m)
