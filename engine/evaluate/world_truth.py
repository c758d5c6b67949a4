"""Compare boxes with the synthetic world's ground truth (`ground_truth/boxes.parquet`): is a
box a real work-zone object? Used to report how good label rules and flicker mining are, and,
in the demo, to answer for the human labeller of edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from engine.metrics.detection import box_iou
from engine.yolo_format import format_yolo_labels


def load_truth(world_dir: Path) -> pd.DataFrame:
    """The world's drawn cue objects: video_stem, frame, kind, x1, y1, x2, y2 (native pixels)."""
    boxes = pd.read_parquet(Path(world_dir) / "ground_truth" / "boxes.parquet")
    return boxes[boxes["is_cue"]].reset_index(drop=True)


def matches_real_object(boxes: pd.DataFrame, truth: pd.DataFrame, iou_min: float = 0.5) -> np.ndarray:
    """For each row of `boxes` (video_stem, frame, x1, y1, x2, y2), whether a drawn cue object
    of that frame overlaps it with IoU >= `iou_min`, whatever its class: a box on a real object
    is a real object, even with the wrong class."""
    out = np.zeros(len(boxes), bool)
    if boxes.empty:
        return out
    by_frame = {key: group[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
                for key, group in truth.groupby(["video_stem", "frame"])}
    xyxy = boxes[["x1", "y1", "x2", "y2"]].to_numpy(np.float64)
    for i, (stem, frame) in enumerate(zip(boxes["video_stem"], boxes["frame"])):
        gt = by_frame.get((stem, int(frame)))
        if gt is not None:
            out[i] = bool((box_iou(xyxy[i : i + 1], gt) >= iou_min).any())
    return out


def truth_label_texts(frames: pd.DataFrame, truth: pd.DataFrame) -> list[str]:
    """YOLO label text of every row of `frames` (video_stem, frame, width, height): the cue
    objects the world drew in that frame, as the world's own training labels write them."""
    by_frame = {key: group for key, group in truth.groupby(["video_stem", "frame"])}
    texts = []
    for stem, frame, width, height in zip(frames["video_stem"], frames["frame"], frames["width"], frames["height"]):
        gt = by_frame.get((stem, int(frame)), truth.iloc[:0])
        texts.append(format_yolo_labels(gt["class_id"].to_numpy(), gt[["x1", "y1", "x2", "y2"]].to_numpy(),
                                        int(width), int(height)))
    return texts


def share(mask: np.ndarray) -> float | None:
    return round(float(np.mean(mask)), 4) if len(mask) else None


def flicker_truth_report(candidates: pd.DataFrame, truth: pd.DataFrame, iou_min: float = 0.5) -> dict:
    """How many of flicker mining's isolated boxes are not real objects (its precision as a
    false-positive finder)."""
    import json

    rows = []
    for cand in candidates.itertuples(index=False):
        stem = getattr(cand, "video_stem", None) or cand.video_key
        for name, conf, x1, y1, x2, y2 in json.loads(cand.isolated_boxes_json or "[]"):
            rows.append({"video_stem": stem, "frame": int(cand.frame), "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    real = matches_real_object(pd.DataFrame(rows, columns=["video_stem", "frame", "x1", "y1", "x2", "y2"]), truth, iou_min)
    return {"flicker_boxes": len(real), "not_real_objects": int((~real).sum()), "share_not_real": share(~real)}


def edge_truth_report(candidates: pd.DataFrame, frames: pd.DataFrame) -> dict:
    """What the world drew in edge-case mining's frames (tp videos, fused score in the band):
    how many show real work-zone objects, and how many are inside a zone."""
    stems = candidates["video_stem"] if "video_stem" in candidates else candidates["video_key"]
    table = pd.DataFrame({"video_stem": stems, "frame": candidates["frame"].astype(int)}).merge(frames[["video_stem", "frame", "n_cues", "semantic_state"]],
                                                      on=["video_stem", "frame"], how="left")
    return {"frames": len(table), "share_with_objects": share(table["n_cues"].fillna(0).to_numpy() > 0),
            "share_inside_zone": share((table["semantic_state"] == "INSIDE").to_numpy())}
