"""Label rules on hand-made boxes with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from engine.labels.rules import FpRule, LabelRules, decide_boxes, frame_outcome, points_in_polygon

SQUARE = [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8)]


def test_points_in_polygon_edges_corners_and_concave():
    pts = [(0.5, 0.5), (0.2, 0.5), (0.8, 0.8), (0.2, 0.2), (0.81, 0.5), (0.5, 0.19), (0.5, 0.8)]
    assert points_in_polygon(pts, SQUARE).tolist() == [True, True, True, True, False, False, True]
    # a concave "U": the notch is outside
    u = [(0, 0), (1, 0), (1, 1), (0.7, 1), (0.7, 0.3), (0.3, 0.3), (0.3, 1), (0, 1)]
    assert points_in_polygon([(0.5, 0.8), (0.5, 0.1), (0.1, 0.9), (0.85, 0.9)], u).tolist() == [False, True, True, True]
    # a triangle, as a trapezoid "danger zone" would be
    tri = [(0.5, 0.4), (1.0, 1.0), (0.0, 1.0)]
    assert points_in_polygon([(0.5, 0.99), (0.1, 0.5), (0.75, 0.7)], tri).tolist() == [True, False, True]


def _boxes():
    # w=100, h=100; (conf, x1, y1, x2, y2)
    b = np.array([
        [0.95, 40, 50, 60, 70],  # 0: in zone (bottom centre 50,70), 4 % of the frame
        [0.60, 45, 40, 75, 75],  # 1: in zone (bottom centre 60,75), 10.5 %
        [0.92, 0, 0, 10, 10],  # 2: outside, small, confident
        [0.40, 85, 20, 95, 40],  # 3: outside, weak
    ], float)
    return b[:, 0], b[:, 1:]


def test_match_rule_needs_every_condition():
    conf, xyxy = _boxes()
    rules = LabelRules(fp_rules=(FpRule("alarm", zone=tuple(SQUARE), min_conf=0.5, min_area_frac=0.05),))
    assert decide_boxes(conf, xyxy, 100, 100, "fp", rules).tolist() == ["kept", "alarm", "kept", "below_keep_conf"]
    # tp videos: no false-alarm rule applies, only the keep bound
    assert decide_boxes(conf, xyxy, 100, 100, "tp", rules).tolist() == ["kept", "below_keep_conf", "kept",
                                                                         "below_keep_conf"]


def test_centre_anchor_and_height_bound():
    conf, xyxy = _boxes()
    rules = LabelRules(fp_rules=(FpRule("tall", zone=((0, 0), (1, 0), (1, 0.5), (0, 0.5)), anchor="center",
                                        min_height_frac=0.15),))
    # centres: 0 -> (50,60) out, 1 -> (60,57.5) out, 2 -> (5,5) in but 10 % tall, 3 -> (90,30) in and 20 % tall
    assert decide_boxes(conf, xyxy, 100, 100, "clean", rules).tolist() == ["kept", "below_keep_conf", "kept", "tall"]


def test_largest_in_zone_drops_only_the_largest_and_breaks_ties():
    conf, xyxy = _boxes()
    rules = LabelRules(fp_rules=(FpRule("largest", kind="largest_in_zone", zone=tuple(SQUARE)),), keep_conf=0.5)
    assert decide_boxes(conf, xyxy, 100, 100, "fp", rules).tolist() == ["kept", "largest", "kept", "below_keep_conf"]
    same = np.array([[10, 10, 30, 30], [40, 40, 60, 60], [50, 30, 70, 50]], float)  # equal areas, all in zone
    tie = decide_boxes(np.array([0.7, 0.9, 0.9]), same, 100, 100, "fp", rules).tolist()
    assert tie == ["kept", "largest", "kept"], "equal area: the more confident, then the first"


def test_rules_apply_in_order_and_background_takes_the_rest():
    conf, xyxy = _boxes()
    rules = LabelRules(fp_rules=(FpRule("confident", min_conf=0.9), FpRule("rest", kind="background")))
    assert decide_boxes(conf, xyxy, 100, 100, "fp", rules).tolist() == ["confident", "rest", "confident", "rest"]
    assert decide_boxes(np.zeros(0), np.zeros((0, 4)), 100, 100, "fp", rules).tolist() == []


def test_frame_outcomes():
    rules = LabelRules(pseudo_loss_weight=0.5)
    assert frame_outcome("fp", 0, rules) == (True, "hard_negative", 1.0)
    assert frame_outcome("fp", 2, rules) == (True, "pseudo_labelled", 0.5)
    assert frame_outcome("tp", 1, rules) == (True, "pseudo_labelled", 0.5)
    assert frame_outcome("tp", 0, rules) == (False, "unused", 0.0)
    assert frame_outcome("unknown", 0, rules) == (False, "unused", 0.0)


def test_unknown_rule_kind_is_an_error():
    with pytest.raises(ValueError, match="unknown rule kind"):
        decide_boxes(np.array([0.9]), np.array([[0, 0, 1, 1]]), 10, 10, "fp", LabelRules(fp_rules=(FpRule("x", kind="?"),)))


@pytest.mark.reliability("bad config")
def test_a_false_alarm_label_that_no_video_carries_is_refused():
    """`rules.fp_labels=[fp, clen]` would have kept every alarm of the clean videos as an object to learn."""
    from engine.config import ConfigError, load_config
    from engine.labels.config import LabelConfig

    with pytest.raises(ConfigError, match=r"rules.fp_labels.1 = 'clen': Input should be 'tp', 'fp', 'clean' or 'unknown'"):
        load_config(LabelConfig, None, ["rules.fp_labels=[fp, clen]"])
    assert load_config(LabelConfig, None, ["rules.fp_labels=[fp]"]).rules.to_rules().fp_labels == ("fp",)
