"""Fusion, gating and selection on hand-written timelines with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.mining.fusion import clip_workzone_probability, frame_cues, fuse_scores
from engine.mining.gating import GateParams, run_gate, semantic_states
from engine.mining.selection import SelectionParams, count_reasons, select_candidates

CONE, BARREL, SIGN = 1 << 0, 1 << 1, 1 << 2


def test_fuse_scores_weights():
    assert fuse_scores(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.6, 0.4) == pytest.approx([0.6, 0.4])
    assert fuse_scores(np.array([0.8]), np.array([0.2]), 3, 1) == pytest.approx([0.65])
    with pytest.raises(ValueError):
        fuse_scores(np.array([1.0]), np.array([1.0]), 0, 0)


def test_clip_probability_is_softmax_mass():
    text = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # 1 work-zone prompt, 2 lookalike
    image = np.array([[1.0, 0.0], [0.0, 1.0]])
    p = clip_workzone_probability(image, text, n_workzone_prompts=1, logit_scale=1.0)
    e = np.exp
    assert p[0] == pytest.approx(e(1) / (e(1) + e(0) + e(-1)))
    assert p[1] == pytest.approx(e(0) / (e(0) + e(1) + e(0)))


def test_frame_cues_known_answer():
    cls = np.array([0, 0, 2, 5])
    conf = np.array([0.9, 0.2, 0.5, 0.99])  # class 5 is not a cue class
    xyxy = np.array([[0, 0, 10, 10], [0, 0, 5, 5], [50, 0, 70, 10], [0, 0, 100, 100]])
    out = frame_cues(cls, conf, xyxy, [0, 1, 2, 3], cue_conf=0.3, frame_w=100, frame_h=50)
    assert out["yolo_score"] == pytest.approx(0.9)
    assert out["cue_count"] == 2 and out["cue_mask"] == CONE | SIGN
    assert out["cue_area_frac"] == pytest.approx((100 + 200) / 5000)
    assert out["cue_center_x"] == pytest.approx((5 + 60) / 2 / 100)
    # bits follow the position in the cue list, so COCO-sized class ids still fit in 63 bits
    coco = frame_cues(np.array([79, 70]), np.array([0.9, 0.9]), xyxy[:2], [70, 79], 0.3, 100, 50)
    assert coco["cue_mask"] == 0b11
    empty = frame_cues([], [], np.zeros((0, 4)), [0, 1], 0.3, 10, 10)
    assert empty["yolo_score"] == 0.0 and empty["cue_mask"] == 0 and np.isnan(empty["cue_center_x"])


def test_gate_window_edges():
    # cone present in rows 0-2, barrel in rows 1-3; N=2 of W=3, K=2
    mask = np.array([CONE, CONE | BARREL, CONE | BARREL, BARREL, 0, 0])
    result = run_gate(mask, np.zeros(6), GateParams(min_cue_kinds=2, min_frames=2, window_frames=3))
    # cone counts in window: 1,2,3,2,1,0 ; barrel counts: 0,1,2,3,2,1
    assert result.sustained_cues.tolist() == [0, 1, 2, 2, 1, 0]
    assert result.gate_pass.tolist() == [False, False, True, True, False, False]
    assert result.semantic_state.tolist() == ["OUT", "APPROACHING", "INSIDE", "INSIDE", "EXITING", "OUT"]


def test_gate_gap_breaks_persistence():
    # present, gap of 3, present again: with N=2 of W=3 the gap drops persistence
    mask = np.array([CONE | SIGN] * 3 + [0] * 3 + [CONE | SIGN] * 3)
    result = run_gate(mask, np.ones(9), GateParams(min_cue_kinds=2, min_frames=2, window_frames=3))
    assert result.gate_pass.tolist() == [False, True, True, True, False, False, False, True, True]
    assert result.semantic_state.tolist() == ["OUT", "INSIDE", "INSIDE", "INSIDE", "EXITING", "OUT", "OUT", "INSIDE", "INSIDE"]


def test_the_gate_passes_on_the_detector_cues_alone_whatever_the_fused_score():
    """Why evaluation mines its events without CLIP: an event is a run of frames the gate passes,
    and CLIP reaches the gate only through the fused score, which moves the confidence alone."""
    rng = np.random.default_rng(0)
    cues = rng.integers(0, 16, 300)
    params = GateParams(min_cue_kinds=2, min_frames=3, window_frames=5)
    with_clip, without = run_gate(cues, rng.random(300), params), run_gate(cues, np.zeros(300), params)
    assert with_clip.gate_pass.any() and not with_clip.gate_pass.all()
    np.testing.assert_array_equal(with_clip.gate_pass, without.gate_pass)
    np.testing.assert_array_equal(with_clip.semantic_state, without.semantic_state)
    assert not np.allclose(with_clip.gate_confidence, without.gate_confidence)


def test_gate_confidence_known_answer():
    mask = np.array([CONE | BARREL] * 4)
    fused = np.array([0.5, 0.5, 0.5, 0.9])
    params = GateParams(min_cue_kinds=2, min_frames=2, window_frames=4, persistence_weight=0.6)
    result = run_gate(mask, fused, params)
    # row 3: both kinds present 4/4 -> persistence 1.0; fused mean over 4 rows 0.6
    assert result.gate_confidence[3] == pytest.approx(0.6 * 1.0 + 0.4 * 0.6)
    # row 0: 1/4 persistence; fused mean over 1 row 0.5
    assert result.gate_confidence[0] == pytest.approx(0.6 * 0.25 + 0.4 * 0.5)


def test_approaching_falls_back_to_out():
    sustained = np.array([1, 0, 0, 0, 0])
    states = semantic_states(sustained, np.zeros(5, bool), window_frames=3)
    assert states.tolist() == ["APPROACHING", "APPROACHING", "APPROACHING", "OUT", "OUT"]


def test_empty_timeline():
    result = run_gate(np.zeros(0, np.int64), np.zeros(0), GateParams())
    assert len(result.gate_pass) == 0 and len(result.semantic_state) == 0


def _select(mode="edge-cases", label="tp", **kw):
    frame = np.arange(0, 20, 2)
    fused = np.array([0.3, 0.5, 0.6, 0.7, 0.9, 0.5, 0.55, 0.6, 0.65, 0.7])
    yolo = np.array([0.1, 0.3, 0.5, 0.6, 0.9, 0.2, 0.4, 0.8, 0.7, 0.6])
    gate = np.array([True, True, True, True, True, False, True, True, True, True])
    conf = np.array([0.5, 0.6, 0.9, 0.8, 0.95, 0.9, 0.7, 0.85, 0.6, 0.75])
    return select_candidates(frame, yolo, fused, gate, conf, label, SelectionParams(mode=mode, **kw)).tolist()


def test_edge_case_band_quota_and_gap():
    reasons = _select(band_low=0.45, band_high=0.85, quota_per_video=3, min_gap_frames=3)
    # eligible by confidence: f4(.9) f14(.85) f6(.8) f18(.75) f12(.7) f2(.6) f16(.6)
    # f4 and f14 taken, f6 too close to f4, f18 fills the quota, the rest are over it
    assert reasons == ["below_band", "over_quota", "selected", "too_close", "above_band", "gate_failed",
                       "over_quota", "selected", "over_quota", "selected"]
    assert count_reasons(np.array(reasons)) == {"selected": 3, "gate_failed": 1, "below_band": 1, "above_band": 1,
                                                "too_close": 1, "over_quota": 3}


def test_false_alarm_mode():
    assert set(_select(mode="false-alarms", label="tp")) == {"not_false_alarm_video"}
    reasons = _select(mode="false-alarms", label="fp", fire_threshold=0.35, quota_per_video=10, min_gap_frames=1)
    assert reasons == ["model_silent", "model_silent", "selected", "selected", "selected", "model_silent",
                       "selected", "selected", "selected", "selected"]
    reasons = _select(mode="false-alarms", label="clean", fire_threshold=0.15, require_gate=False, quota_per_video=10,
                      min_gap_frames=1)
    assert reasons[5] == "selected" and reasons[0] == "model_silent"
    with pytest.raises(ValueError, match="unknown mining mode"):
        _select(mode="nope")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 15), st.floats(0, 1)), min_size=1, max_size=40), st.randoms(),
       st.integers(1, 40))
def test_gate_and_selection_ignore_arrival_order(rows, rnd, n_retried):
    """The per-video step sorts by frame and drops rows a retried task sent again, so any
    arrival order, with any duplicates, gives the same candidates."""
    import pandas as pd

    from engine.mining.timeline import finalize_video

    frames = pd.DataFrame({
        "frame": np.arange(len(rows)) * 2,
        "cue_mask": [m for m, _ in rows],
        "fused_score": [f for _, f in rows],
        "yolo_score": [f for _, f in rows],
    })
    retried = frames.sample(n=min(n_retried, len(frames)), random_state=rnd.randint(0, 10**6))
    shuffled = pd.concat([frames, retried]).sample(frac=1.0, random_state=rnd.randint(0, 10**6))
    assert len(shuffled) > len(frames), "the input really holds duplicates"
    gate = GateParams(min_cue_kinds=2, min_frames=2, window_frames=3)
    sel = SelectionParams(band_low=0.2, band_high=0.9, quota_per_video=5, min_gap_frames=3)
    a = finalize_video(frames, "tp", gate, sel)
    b = finalize_video(shuffled, "tp", gate, sel)
    pd.testing.assert_frame_equal(a, b)
    again = finalize_video(frames, "tp", gate, sel)
    pd.testing.assert_frame_equal(a, again)


def test_a_nan_score_is_invalid_and_does_not_poison_the_gate():
    mask = np.array([CONE | BARREL] * 6)
    fused = np.array([0.6, np.nan, 0.6, 0.6, 0.6, 0.6])
    params = GateParams(min_cue_kinds=2, min_frames=2, window_frames=2, persistence_weight=0.5)
    result = run_gate(mask, fused, params)
    assert np.isfinite(result.gate_confidence).all()
    # the NaN row counts as 0 in the windows it belongs to (rows 1 and 2), and no further
    assert result.gate_confidence[2] == pytest.approx(0.5 * 1.0 + 0.5 * 0.3)
    assert result.gate_confidence[3] == pytest.approx(0.5 * 1.0 + 0.5 * 0.6)
    reasons = select_candidates(np.arange(6) * 2, np.full(6, 0.9), fused, result.gate_pass, result.gate_confidence,
                                "fp", SelectionParams(mode="edge-cases", band_low=0.0, band_high=1.0, min_gap_frames=0))
    assert reasons[1] == "invalid_score" and "invalid_score" not in np.delete(reasons, 1)
    yolo_nan = select_candidates(np.arange(3), np.array([0.9, np.nan, 0.9]), np.full(3, 0.5), np.ones(3, bool),
                                 np.ones(3), "fp", SelectionParams(mode="false-alarms", min_gap_frames=0))
    assert yolo_nan.tolist() == ["selected", "invalid_score", "selected"]


def _row(*boxes):
    """boxes: (class, conf, x1, y1, x2, y2)"""
    import json

    return json.dumps([list(b) for b in boxes])


def test_flicker_flags_boxes_without_temporal_support():
    from engine.mining.flicker import flicker_columns

    cone = ("cone", 0.8, 10, 10, 20, 20)
    timeline = [
        _row(cone),
        _row(cone, ("sign", 0.9, 50, 50, 60, 60)),  # the sign appears once: isolated
        _row(("cone", 0.3, 11, 10, 21, 20)),  # a weak repeat still supports the cone
        _row(),
        _row(("barrel", 0.2, 0, 0, 5, 5)),  # isolated but below flicker_conf
        _row(("cone", 0.7, 80, 80, 90, 90)),  # a cone far from the earlier ones: isolated
        _row(),
        _row(("cone", 0.6, 10, 10, 20, 20)),  # same place as rows 0-2 but 5 rows later: isolated
    ]
    out = flicker_columns(timeline, window_rows=2, iou_min=0.5, min_conf=0.25)
    assert out["n_isolated"].tolist() == [0, 1, 0, 0, 0, 1, 0, 1]
    assert out["flicker_score"].tolist() == [0, 0.9, 0, 0, 0, 0.7, 0, 0.6]
    assert out["isolated_boxes_json"][1] == _row(("sign", 0.9, 50, 50, 60, 60))
    # the class must match: a barrel over the cone's box is no support
    swapped = flicker_columns([_row(cone), _row(("barrel", 0.9, 10, 10, 20, 20))], 1, 0.5, 0.25)
    assert swapped["n_isolated"].tolist() == [1, 1]
    # the window edge: support exactly window_rows away counts, one further does not
    edge = flicker_columns([_row(cone), _row(), _row(cone), _row(), _row(), _row(cone)], 2, 0.5, 0.25)
    assert edge["n_isolated"].tolist() == [0, 0, 0, 0, 0, 1]
    assert flicker_columns([_row(cone)], 2, 0.5, 0.25)["n_isolated"].tolist() == [0], "no neighbours: nothing flagged"


def test_flicker_mode_selects_isolated_frames_by_their_confidence():
    import pandas as pd

    from engine.mining.timeline import finalize_video

    cone = ("cone", 0.8, 10, 10, 20, 20)
    frames = pd.DataFrame({
        "frame": [0, 2, 4, 6, 8, 10],
        "cue_mask": 0, "fused_score": 0.5, "yolo_score": 0.5,
        "boxes_json": [_row(cone), _row(cone, ("sign", 0.9, 50, 50, 60, 60)), _row(cone),
                       _row(cone, ("sign", 0.4, 90, 10, 99, 20)), _row(cone), _row(cone, ("barrel", 0.6, 0, 60, 9, 70))],
    })
    sel = SelectionParams(mode="flicker", quota_per_video=2, min_gap_frames=0, flicker_window_rows=1,
                          flicker_iou=0.5, flicker_conf=0.25)
    timeline = finalize_video(frames, "unknown", GateParams(), sel)
    assert timeline.reason.tolist() == ["no_flicker", "selected", "no_flicker", "over_quota", "no_flicker", "selected"]
    assert timeline.loc[1, "isolated_boxes_json"] == _row(("sign", 0.9, 50, 50, 60, 60))
