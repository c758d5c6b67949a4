"""Per-video outputs of the mining job, committed together with a completion marker.

    <out>/timelines/<key>.parquet          every scored frame with gate columns and reason
    <out>/candidates/<key>/<key>_f<N>.jpg  candidate frames at native resolution
    <out>/parts/<key>.parquet              the video's candidate rows
    <out>/annotated/<key>.mp4              optional H.264 overlay
    <out>/done/<key>.json                  completion marker, written last
    <out>/errors/<key>.json                why a video failed

The latest attempt decides. Both files carry the time of their attempt; a success removes
the video's error file, and a failure removes the marker and the outputs of an earlier
success, so old candidates never stand in for a new error. Should a crash leave both files,
the newer wins. A rerun trusts only markers: a video without one is redone from scratch, and
the run-level tables are rebuilt from each video's latest attempt, so nothing is lost or
duplicated.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from engine.attempts import latest_attempt, record_done, record_failure
from engine.mining.inputs import VideoInput
from engine.storage import local_copy, write_table
from engine.video.decode import decode_frames

CANDIDATE_COLUMNS = [  # seed 000's master CSV, then what Quarry adds
    "video_path", "snapshot_path", "frame", "timestamp_s", "yolo_score", "fused_score", "semantic_state",
    "gate_pass", "sustained_cues", "gate_confidence",
    "video_key", "video_label", "clip_p_workzone", "cue_count", "cue_area_frac", "n_boxes", "boxes_json",
    "mode", "detector", "detector_sha256", "clip", "clip_checkpoint_sha256", "quarry_version", "config_hash",
]


def read_marker(out: Path, key: str) -> dict | None:
    attempt = latest_attempt(out, key)
    return attempt[1] if attempt and attempt[0] == "done" else None


def snapshot_name(key: str, frame: int) -> str:
    return f"candidates/{key}/{key}_f{frame}.jpg"


def candidate_rows(video: VideoInput, timeline: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    chosen = timeline[timeline["is_candidate"]]
    rows = pd.DataFrame({
        "video_path": video.uri,
        "snapshot_path": [snapshot_name(video.key, int(f)) for f in chosen["frame"]],
        "frame": chosen["frame"].to_numpy(),
        "timestamp_s": chosen["t_s"].to_numpy(),
        "yolo_score": chosen["yolo_score"].to_numpy(),
        "fused_score": chosen["fused_score"].to_numpy(),
        "semantic_state": chosen["semantic_state"].to_numpy(),
        "gate_pass": chosen["gate_pass"].to_numpy(),
        "sustained_cues": chosen["sustained_cues"].to_numpy(),
        "gate_confidence": chosen["gate_confidence"].to_numpy(),
        "video_key": video.key,
        "video_label": video.video_label,
        "clip_p_workzone": chosen["clip_p_workzone"].to_numpy(),
        "cue_count": chosen["cue_count"].to_numpy(),
        "cue_area_frac": chosen["cue_area_frac"].to_numpy(),
        "n_boxes": chosen["n_boxes"].to_numpy(),
        "boxes_json": chosen["boxes_json"].to_numpy(),
        **provenance,
    }, columns=CANDIDATE_COLUMNS)
    if "isolated_boxes_json" in chosen:  # flicker mode: the boxes without temporal support
        rows["isolated_boxes_json"] = chosen["isolated_boxes_json"].to_numpy()
    for name, value in video.metadata.items():  # manifest metadata rides along on every row
        if name not in rows.columns:
            rows[name] = value
    return rows


def _write_snapshots(path: str, key: str, frames: list[int], out: Path, quality: int) -> None:
    """Decode the candidate frames at native size into a temp folder, then swap it in."""
    final = out / "candidates" / key
    staging = out / "candidates" / f".{key}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for frame_ids, pixels in decode_frames(path, frames):
        for frame, rgb in zip(frame_ids, pixels):
            ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {key} frame {frame}")
            (staging / f"{key}_f{int(frame)}.jpg").write_bytes(data.tobytes())
    written = len(list(staging.iterdir()))
    if written != len(frames):
        raise RuntimeError(f"decoded {written} of {len(frames)} candidate frames")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)


def _write_overlay(path: str, key: str, timeline: pd.DataFrame, out: Path, fps: float) -> None:
    from engine.synth.video_io import write_h264

    states = dict(zip(timeline["frame"], zip(timeline["semantic_state"], timeline["gate_pass"], timeline["boxes_json"])))

    def frames():
        for frame_ids, pixels in decode_frames(path, list(timeline["frame"])):
            for frame, rgb in zip(frame_ids, pixels):
                state, passed, boxes = states[int(frame)]
                img = np.ascontiguousarray(rgb)
                for name, conf, x1, y1, x2, y2 in json.loads(boxes):
                    cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), (255, 200, 0), 1)
                    cv2.putText(img, f"{name} {conf:.2f}", (int(x1), max(8, int(y1) - 2)), 0, 0.3, (255, 200, 0), 1)
                color = (0, 220, 0) if passed else (220, 220, 220)
                cv2.putText(img, f"{state} gate={'pass' if passed else 'no'} f{int(frame)}", (3, 11), 0, 0.35, color, 1)
                yield img

    write_h264(frames(), out / "annotated" / f"{key}.mp4", max(1, int(round(fps))))


def commit_video(out: Path, video: VideoInput, timeline: pd.DataFrame, provenance: dict, fps_out: float,
                 timeline_csv: bool, annotated: bool, jpeg_quality: int, run_hash: str) -> dict:
    """Write every output of one video, then its marker; return the marker's content."""
    out = Path(out)
    write_table(timeline, out / "timelines" / f"{video.key}.parquet", csv=timeline_csv)
    rows = candidate_rows(video, timeline, provenance)
    with local_copy(video.uri) as path:
        _write_snapshots(path, video.key, [int(f) for f in rows["frame"]], out, jpeg_quality)
        if annotated:
            _write_overlay(path, video.key, timeline, out, fps_out)
    write_table(rows, out / "parts" / f"{video.key}.parquet")
    reasons = timeline["reason"].value_counts().to_dict()
    return record_done(out, video.key, {"uri": video.uri, "frames_scored": len(timeline), "candidates": len(rows),
                                        "reasons": {k: int(v) for k, v in reasons.items()}, "run_hash": run_hash})


def record_error(out: Path, video: VideoInput, reason: str, run_hash: str) -> dict:
    """Record why the video failed; the outputs of an earlier success are removed with it."""
    out = Path(out)
    error = record_failure(out, video.key, {"video_path": video.uri, "video_label": video.video_label, "reason": reason,
                                            "run_hash": run_hash})
    for stale in (out / "parts" / f"{video.key}.parquet", out / "timelines" / f"{video.key}.parquet",
                  out / "timelines" / f"{video.key}.csv", out / "annotated" / f"{video.key}.mp4"):
        stale.unlink(missing_ok=True)
    shutil.rmtree(out / "candidates" / video.key, ignore_errors=True)
    return error


def rebuild_tables(out: Path, videos: list[VideoInput], csv: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """candidates.parquet/.csv and errors.parquet from the per-video files of these inputs."""
    out = Path(out)
    parts, errors = [], []
    for video in videos:
        attempt = latest_attempt(out, video.key)
        if attempt is None:
            continue
        kind, record = attempt
        if kind == "done":
            parts.append(pd.read_parquet(out / "parts" / f"{video.key}.parquet"))
        else:
            errors.append(record)
    parts = [p for p in parts if len(p)]
    # no candidates at all (a model that no longer fires): the same columns, metadata included
    columns = list(dict.fromkeys([*CANDIDATE_COLUMNS, *(name for video in videos for name in video.metadata)]))
    candidates = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    candidates = candidates.sort_values(["video_key", "frame"], kind="stable").reset_index(drop=True)
    errors_df = pd.DataFrame(errors, columns=["key", "video_path", "video_label", "reason", "run_hash", "attempted_at"])
    write_table(candidates, out / "candidates.parquet", csv=csv)
    write_table(errors_df, out / "errors.parquet")
    return candidates, errors_df
