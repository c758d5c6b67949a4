"""Which gated frames become candidates, and why every other frame did not (pure numpy).

Three modes:
- `edge-cases` (seed 000): frames that pass the gate with a fused score inside the band
  [band_low, band_high]; ranked by gate confidence.
- `false-alarms` (seed 001): in videos labelled fp or clean (no work zone), frames where the
  current model fires (yolo_score >= fire_threshold) and, when `require_gate`, the gate
  would have raised an alarm; ranked by yolo_score. These are hard negatives.
- `flicker` (Jin et al., CVPR 2018; for videos with no label, though it ignores labels):
  frames holding a detection with no temporal support (see `flicker`); ranked by the
  highest confidence among those isolated boxes.
Then a per-video quota and a minimum gap in frames between candidates (temporal
de-duplication), greedily by rank (ties: earlier frame first). A frame whose YOLO or fused
score is not a finite number is never a candidate (reason `invalid_score`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

MODES = ("edge-cases", "false-alarms", "flicker")
FALSE_ALARM_LABELS = ("fp", "clean")
REASONS = ("selected", "invalid_score", "gate_failed", "below_band", "above_band", "model_silent", "not_false_alarm_video", "no_flicker",
           "too_close", "over_quota")


@dataclass(frozen=True)
class SelectionParams:
    mode: str = "edge-cases"
    band_low: float = 0.45
    band_high: float = 0.85
    fire_threshold: float = 0.25
    require_gate: bool = True
    quota_per_video: int = 50
    min_gap_frames: int = 4
    flicker_window_rows: int = 2
    flicker_iou: float = 0.3
    flicker_conf: float = 0.25


def select_candidates(frame: np.ndarray, yolo_score: np.ndarray, fused_score: np.ndarray, gate_pass: np.ndarray,
                      gate_confidence: np.ndarray, video_label: str, params: SelectionParams,
                      flicker_score: np.ndarray | None = None) -> np.ndarray:
    """Reason per row (see REASONS); rows with reason "selected" are the candidates.
    `flicker_score` (flicker mode): the highest confidence of the row's isolated boxes, 0 if none."""
    frame = np.asarray(frame, np.int64)
    n = len(frame)
    reasons = np.full(n, "", dtype=object)
    gate_pass = np.asarray(gate_pass, bool)
    fused = np.asarray(fused_score, np.float64)
    yolo = np.asarray(yolo_score, np.float64)
    invalid = ~(np.isfinite(fused) & np.isfinite(yolo))
    if params.mode == "edge-cases":
        reasons[~gate_pass] = "gate_failed"
        reasons[gate_pass & (fused < params.band_low)] = "below_band"
        reasons[gate_pass & (fused > params.band_high)] = "above_band"
        priority = np.asarray(gate_confidence, np.float64)
    elif params.mode == "false-alarms":
        if video_label not in FALSE_ALARM_LABELS:
            reasons[:] = "not_false_alarm_video"
        else:
            reasons[yolo < params.fire_threshold] = "model_silent"
            if params.require_gate:
                reasons[(reasons == "") & ~gate_pass] = "gate_failed"
        priority = yolo
    elif params.mode == "flicker":
        if flicker_score is None:
            raise ValueError("flicker mode needs the rows' flicker_score")
        priority = np.asarray(flicker_score, np.float64)
        reasons[priority <= 0] = "no_flicker"
    else:
        raise ValueError(f"unknown mining mode {params.mode!r}; expected one of {MODES}")
    reasons[invalid & (reasons != "not_false_alarm_video")] = "invalid_score"
    eligible = np.flatnonzero(reasons == "")
    order = eligible[np.lexsort((frame[eligible], -priority[eligible]))]
    chosen: list[int] = []
    for i in order:
        if len(chosen) >= params.quota_per_video:
            reasons[i] = "over_quota"
        elif any(abs(frame[i] - frame[j]) < params.min_gap_frames for j in chosen):
            reasons[i] = "too_close"
        else:
            reasons[i] = "selected"
            chosen.append(i)
    return reasons.astype(str)


def count_reasons(reasons: np.ndarray) -> dict[str, int]:
    counts = Counter(str(r) for r in reasons)
    return {reason: counts.get(reason, 0) for reason in REASONS if counts.get(reason, 0)}
