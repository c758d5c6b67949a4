"""Event-level metrics on videos (pure pandas): a video raises an alarm when the mining gate
passes; an alarm event is a run of gate-passing sampled frames (runs closer than `merge_gap`
sampled frames are one event). A work-zone (tp) video is detected when it has an event;
videos without a work zone (fp, clean) count false alarms, per video and per hour (seed 001's
"Safe classified as Danger")."""

from __future__ import annotations

import numpy as np
import pandas as pd

NEGATIVE_LABELS = ("fp", "clean")


def alarm_events(gate_pass, merge_gap: int = 0) -> int:
    """Runs of True in frame order, runs separated by at most `merge_gap` False rows merged."""
    events, gap = 0, None  # gap: gate-failing rows since the last passing one (None before any)
    for passed in np.asarray(gate_pass, bool):
        if passed:
            if gap is None or gap > merge_gap:
                events += 1
            gap = 0
        elif gap is not None:
            gap += 1
    return events

def video_events(timelines: dict[str, pd.DataFrame], labels: dict[str, str], durations_s: dict[str, float],
                 merge_gap: int = 0) -> dict:
    """`timelines[key]`: the video's rows (frame, gate_pass), any order. Returns event recall over
    tp videos, false alarms per negative video and per hour, and a row per video."""
    rows = []
    for key, timeline in timelines.items():
        ordered = timeline.sort_values("frame")
        rows.append({"video": key, "video_label": labels[key], "events": alarm_events(ordered["gate_pass"], merge_gap),
                     "duration_s": durations_s[key]})
    table = pd.DataFrame(rows, columns=["video", "video_label", "events", "duration_s"])
    tp = table[table["video_label"] == "tp"]
    neg = table[table["video_label"].isin(NEGATIVE_LABELS)]
    hours = neg["duration_s"].sum() / 3600.0
    return {"tp_videos": len(tp), "detected": int((tp["events"] > 0).sum()),
            "event_recall": float((tp["events"] > 0).mean()) if len(tp) else None,
            "negative_videos": len(neg), "false_alarms": int(neg["events"].sum()),
            "videos_with_false_alarm": int((neg["events"] > 0).sum()),
            "false_alarms_per_video": float(neg["events"].mean()) if len(neg) else None,
            "false_alarms_per_hour": float(neg["events"].sum() / hours) if hours else None,
            "per_video": table.to_dict("records")}
