"""Which pseudo-labels to keep (pure numpy), seed 001's rules for videos whose alarm was false.

The current model labels every frame. In a video labelled a false alarm (`fp`, or `clean`:
nothing there), the boxes that raised the alarm are dropped, by the first rule that matches:

- `match`: every condition the rule gives holds: the box's anchor point (bottom centre,
  where an object meets the road, or centre) lies inside the zone polygon (normalised
  coordinates, edges inside), its area or height as a share of the frame is at least a bound,
  its confidence at least a bound;
- `largest_in_zone`: of the boxes matching the conditions, only the largest (ties: the more
  confident, then the first);
- `background`: every box: the whole frame becomes background (an empty label file).

Every box that no rule dropped is kept only at confidence >= `keep_conf` (seed 004: 0.9),
in every video; below it is dropped as `below_keep_conf`. A frame of a `tp` or unlabelled
video with no box kept is not used: an empty label file would teach the model that the real
objects in it are background (seed 001's risk).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULE_KINDS = ("match", "largest_in_zone", "background")
ANCHORS = ("bottom_center", "center")
KEPT = "kept"
BELOW_KEEP = "below_keep_conf"


@dataclass(frozen=True)
class FpRule:
    name: str
    kind: str = "match"
    zone: tuple[tuple[float, float], ...] | None = None  # polygon, normalised (x, y)
    anchor: str = "bottom_center"
    min_area_frac: float | None = None
    min_height_frac: float | None = None
    min_conf: float | None = None


@dataclass(frozen=True)
class LabelRules:
    fp_labels: tuple[str, ...] = ("fp", "clean")
    fp_rules: tuple[FpRule, ...] = ()
    keep_conf: float = 0.9
    pseudo_loss_weight: float = 0.5


def points_in_polygon(points: np.ndarray, polygon) -> np.ndarray:
    """For each (x, y) point, whether it lies inside the polygon or on its boundary."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    # on an edge: collinear with it and within its bounding box
    cross = (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1)
    within = (np.minimum(x1, x2) - 1e-12 <= x) & (x <= np.maximum(x1, x2) + 1e-12) & \
             (np.minimum(y1, y2) - 1e-12 <= y) & (y <= np.maximum(y1, y2) + 1e-12)
    on_edge = ((np.abs(cross) <= 1e-12) & within).any(axis=1)
    # even-odd ray casting to the right
    straddles = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
    crossings = (straddles & (x < x_cross)).sum(axis=1)
    return on_edge | (crossings % 2 == 1)


def rule_matches(rule: FpRule, conf: np.ndarray, xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes for which every condition the rule gives holds (no condition: every box)."""
    conf = np.asarray(conf, np.float64).reshape(-1)
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    ok = np.ones(len(conf), bool)
    if rule.zone is not None:
        ax = (xyxy[:, 0] + xyxy[:, 2]) / 2 / width
        ay = (xyxy[:, 3] if rule.anchor == "bottom_center" else (xyxy[:, 1] + xyxy[:, 3]) / 2) / height
        ok &= points_in_polygon(np.stack([ax, ay], axis=1), rule.zone)
    if rule.min_area_frac is not None:
        ok &= (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / (width * height) >= rule.min_area_frac
    if rule.min_height_frac is not None:
        ok &= (xyxy[:, 3] - xyxy[:, 1]) / height >= rule.min_height_frac
    if rule.min_conf is not None:
        ok &= conf >= rule.min_conf
    return ok


def decide_boxes(conf, xyxy, width: int, height: int, video_label: str, rules: LabelRules) -> np.ndarray:
    """A reason per box: "kept", a rule's name (dropped by it) or "below_keep_conf"."""
    conf = np.asarray(conf, np.float64).reshape(-1)
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    reasons = np.full(len(conf), "", dtype=object)
    if video_label in rules.fp_labels:
        for rule in rules.fp_rules:
            open_ = reasons == ""
            if rule.kind == "background":
                reasons[open_] = rule.name
                break
            hit = open_ & rule_matches(rule, conf, xyxy, width, height)
            if rule.kind == "largest_in_zone" and hit.any():
                idx = np.flatnonzero(hit)
                area = (xyxy[idx, 2] - xyxy[idx, 0]) * (xyxy[idx, 3] - xyxy[idx, 1])
                largest = idx[np.lexsort((idx, -conf[idx], -area))[0]]
                hit = np.zeros(len(conf), bool)
                hit[largest] = True
            elif rule.kind not in ("match", "largest_in_zone"):
                raise ValueError(f"unknown rule kind {rule.kind!r}; expected one of {RULE_KINDS}")
            reasons[hit] = rule.name
    open_ = reasons == ""
    reasons[open_ & (conf >= rules.keep_conf)] = KEPT
    reasons[open_ & (conf < rules.keep_conf)] = BELOW_KEEP
    return reasons.astype(str)


def frame_outcome(video_label: str, n_kept: int, rules: LabelRules) -> tuple[bool, str, float]:
    """(use the frame for training, its kind, its loss weight) from its kept boxes.

    kinds: `hard_negative` (a false-alarm frame left with no box: background), `pseudo_labelled`
    (kept boxes, weighted `pseudo_loss_weight`), `unused` (a tp/unlabelled frame with no box kept).
    """
    if n_kept > 0:
        return True, "pseudo_labelled", rules.pseudo_loss_weight
    if video_label in rules.fp_labels:
        return True, "hard_negative", 1.0
    return False, "unused", 0.0
