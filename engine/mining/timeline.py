"""The per-video step: sort a video's scored frames, gate them, pick candidates (pure pandas)."""

from __future__ import annotations

import pandas as pd

from engine.mining.flicker import flicker_columns
from engine.mining.gating import GateParams, run_gate
from engine.mining.selection import SelectionParams, select_candidates


def finalize_video(frames: pd.DataFrame, video_label: str, gate: GateParams, selection: SelectionParams) -> pd.DataFrame:
    """Return the video's timeline sorted by frame, with gate columns and a `reason` per row.

    Needs columns frame, cue_mask, fused_score, yolo_score (and boxes_json in flicker mode,
    which adds n_isolated, isolated_boxes_json and flicker_score). Rows may arrive in any order and
    with duplicates of the same frame (a retried task): both are normalised first, so the
    result is a function of the set of scored frames alone.
    """
    timeline = frames.drop_duplicates("frame", keep="last").sort_values("frame", kind="stable").reset_index(drop=True)
    result = run_gate(timeline["cue_mask"].to_numpy(), timeline["fused_score"].to_numpy(), gate)
    timeline["sustained_cues"] = result.sustained_cues
    timeline["gate_pass"] = result.gate_pass
    timeline["gate_confidence"] = result.gate_confidence
    timeline["semantic_state"] = result.semantic_state
    flicker = None
    if selection.mode == "flicker":
        columns = flicker_columns(list(timeline["boxes_json"]), selection.flicker_window_rows, selection.flicker_iou,
                                  selection.flicker_conf)
        for name, values in columns.items():
            timeline[name] = values
        flicker = columns["flicker_score"]
    timeline["reason"] = select_candidates(
        timeline["frame"].to_numpy(), timeline["yolo_score"].to_numpy(), timeline["fused_score"].to_numpy(),
        result.gate_pass, result.gate_confidence, video_label, selection, flicker,
    )
    timeline["is_candidate"] = timeline["reason"] == "selected"
    return timeline
