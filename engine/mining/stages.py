"""The scoring stage: a Ray Data callable class that decodes a chunk of a video and scores
its frames with the detector and CLIP. One task row in (a video chunk), rows out without
pixels: one per scored frame, then one `chunk_end` row (or an `error` row) per chunk.

It knows nothing of Ray: `__init__` loads the models once per actor, `__call__` takes a
batch of task rows, or, with decode.layout=tasks, a batch of frames that `decode_chunks`
decoded upstream. The driver (`pipeline`) turns the rows into per-video timelines.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Iterator

import numpy as np
import pandas as pd

from engine.mining.config import ScoringConfig
from engine.mining.fusion import clip_workzone_probability, frame_cues, fuse_scores
from engine.models import ModelError
from engine.video.chunks import DecodeConfig, decode_task, task_ids

log = logging.getLogger("quarry.mine")

# Every row the scorer emits has these columns, so Ray Data can concatenate blocks.
ROW_COLUMNS = {
    "row_kind": str,  # frame | chunk_end | error
    "video_key": str,
    "chunk_index": np.int64,
    "n_chunks": np.int64,
    "frame": np.int64,
    "t_s": np.float64,
    "fps": np.float64,
    "yolo_score": np.float64,
    "clip_p_workzone": np.float64,
    "fused_score": np.float64,
    "cue_count": np.int64,
    "cue_mask": np.int64,
    "cue_area_frac": np.float64,
    "cue_center_x": np.float64,
    "n_boxes": np.int64,
    "boxes_json": str,  # [[class name, conf, x1, y1, x2, y2], ...] in the video's native pixels
    "n_rows": np.int64,  # chunk_end: frame rows emitted for the chunk
    "error": str,
}

MAX_CUE_KINDS = 63  # cue kinds are the bits of an int64 cue_mask


def empty_row(**values) -> dict:
    row = {name: (kind() if kind is str else kind(0)) for name, kind in ROW_COLUMNS.items()}
    row["cue_center_x"] = np.nan
    row.update(values)
    return row


def to_frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(ROW_COLUMNS)).astype(ROW_COLUMNS)


class FrameScorer:
    """Holds the detector and CLIP; scores chunks of videos."""

    def __init__(self, scoring: dict, decode: dict):
        from engine.offline import enable_offline

        enable_offline()
        self.scoring = ScoringConfig.model_validate(scoring)
        self.decode = DecodeConfig.model_validate(decode)
        self.setup()

    def setup(self) -> None:
        from engine.models.detector import build_detector
        from engine.staging import pull_on_this_node

        started = time.perf_counter()
        # on a node without the driver's mirror
        pull_on_this_node({"scoring.detector.source": self.scoring.detector.source,
                           "scoring.clip.checkpoint": self.scoring.clip.checkpoint if self.scoring.use_clip else None})
        self.detector = build_detector(self.scoring.detector.source)
        names = self.detector.names
        wanted = self.scoring.cue_classes or list(names.values())
        unknown = sorted(set(wanted) - set(names.values()))
        if unknown:
            raise ModelError(f"scoring.cue_classes {unknown} are not classes of the detector ({list(names.values())})")
        self.cue_ids = [int(i) for i, n in names.items() if n in wanted]
        if len(self.cue_ids) > MAX_CUE_KINDS:
            raise ModelError(f"at most {MAX_CUE_KINDS} cue classes fit the cue mask; set scoring.cue_classes")
        self.clip = None
        if self.scoring.use_clip:
            self._setup_clip()
        log.info("scorer ready in %.1f s (pid %d)", time.perf_counter() - started, os.getpid())

    def _setup_clip(self) -> None:
        from engine.models.clip import build_clip, encode_texts, logit_scale

        self.clip = build_clip(self.scoring.clip)
        self.text_emb = encode_texts(self.clip, self.scoring.workzone_prompts + self.scoring.lookalike_prompts)
        self.logit_scale = logit_scale(self.clip)
        self.clip_half = self.scoring.clip.half and next(self.clip.model.parameters()).device.type == "cuda"
        if self.clip_half:
            self.clip.model.half()

    def clip_probabilities(self, frames: np.ndarray) -> np.ndarray:
        from engine.models.clip import encode_images

        emb = encode_images(self.clip, frames, self.clip_half)
        return clip_workzone_probability(emb, self.text_emb, len(self.scoring.workzone_prompts), self.logit_scale)

    def score_images(self, metas: list[dict], images: list[np.ndarray]) -> list[dict]:
        """Rows for a batch of decoded frames; `metas[i]` holds frame i's video_key,
        chunk_index, n_chunks, frame, fps and the video's native_width / native_height
        (frames may come from different videos). Frames may be decoded smaller than native
        (decode.width_px); boxes are scaled back, so every stored box is in native pixels."""
        from engine.models.detector import detect

        detections = detect(self.detector, images, self.scoring.detector)
        p_wz = self.clip_probabilities(images) if self.clip is not None else np.zeros(len(images))
        weight_clip = self.scoring.w_clip if self.clip is not None else 0.0
        rows = []
        for meta, image, dets, p in zip(metas, images, detections, p_wz):
            h, w = image.shape[:2]
            cues = frame_cues(dets.cls, dets.conf, dets.xyxy, self.cue_ids, self.scoring.cue_conf, w, h)
            fused = float(fuse_scores(np.array([cues["yolo_score"]]), np.array([p]), self.scoring.w_yolo, weight_clip)[0])
            scale = np.array([meta["native_width"] / w, meta["native_height"] / h] * 2)
            boxes = [[self.detector.names[int(c)], round(float(s), 4), *(round(float(v), 1) for v in b * scale)]
                     for c, s, b in zip(dets.cls, dets.conf, dets.xyxy)]
            fps = float(meta["fps"])
            rows.append(empty_row(row_kind="frame", t_s=meta["frame"] / fps if fps else 0.0, clip_p_workzone=float(p),
                                  fused_score=fused, n_boxes=len(dets), boxes_json=json.dumps(boxes), **cues,
                                  **{k: meta[k] for k in ("video_key", "chunk_index", "n_chunks", "frame", "fps")}))
        return rows

    def __call__(self, batch: dict) -> Iterator[pd.DataFrame]:
        if "pixels" in batch:  # decode.layout=tasks: frames were decoded upstream
            yield self._score_decoded(pd.DataFrame(batch))
            return
        for task in pd.DataFrame(batch).itertuples(index=False):  # decode.layout=actor
            ids = task_ids(task)
            n_rows = 0
            for kind, payload in decode_task(task, self.decode):
                if kind == "frames":
                    frame_ids, pixels = payload
                    metas = [{**ids, "frame": int(f), "fps": float(task.fps), "native_width": int(task.native_width),
                              "native_height": int(task.native_height)} for f in frame_ids]
                    rows = self.score_images(metas, list(pixels))
                    n_rows += len(rows)
                    yield to_frame(rows)
                elif kind == "error":
                    yield to_frame([empty_row(row_kind="error", error=payload, **ids)])
                else:
                    yield to_frame([empty_row(row_kind="chunk_end", n_rows=n_rows, **ids)])

    def _score_decoded(self, batch: pd.DataFrame) -> pd.DataFrame:
        """Score the frame rows of a batch from `decode_chunks`; pass its end/error rows on."""
        frames = batch[batch["row_kind"] == "frame"]
        images = [np.frombuffer(b, np.uint8).reshape(h, w, 3) for b, h, w in zip(frames["pixels"], frames["height"], frames["width"])]
        metas = frames[["video_key", "chunk_index", "n_chunks", "frame", "fps", "native_width", "native_height"]].to_dict("records")
        rows = self.score_images(metas, images) if images else []
        for marker in batch[batch["row_kind"] != "frame"].itertuples(index=False):
            rows.append(empty_row(row_kind=marker.row_kind, video_key=marker.video_key, chunk_index=marker.chunk_index,
                                  n_chunks=marker.n_chunks, n_rows=marker.n_rows, error=marker.error))
        return to_frame(rows)


PIXEL_COLUMNS = ["row_kind", "video_key", "chunk_index", "n_chunks", "frame", "fps", "native_width", "native_height",
                 "n_rows", "error", "pixels", "height", "width"]


def decode_chunks(batch: dict, decode: dict) -> Iterator[pd.DataFrame]:
    """decode.layout=tasks: decode chunk tasks on CPU workers (Ray Data map_batches); one row
    per frame with its pixels as raw RGB bytes, then the chunk's end or error row."""
    cfg = DecodeConfig.model_validate(decode)
    for task in pd.DataFrame(batch).itertuples(index=False):
        ids = {**task_ids(task), "fps": float(task.fps), "native_width": int(task.native_width),
               "native_height": int(task.native_height)}
        n_rows = 0
        for kind, payload in decode_task(task, cfg):
            if kind == "frames":
                frame_ids, pixels = payload
                n_rows += len(frame_ids)
                h, w = pixels.shape[1:3]
                yield pd.DataFrame({"row_kind": "frame", **ids, "frame": frame_ids.astype(np.int64), "n_rows": 0,
                                    "error": "", "pixels": [p.tobytes() for p in pixels], "height": h, "width": w},
                                   columns=PIXEL_COLUMNS)
            else:
                yield pd.DataFrame([{"row_kind": "error" if kind == "error" else "chunk_end", **ids, "frame": 0,
                                     "n_rows": n_rows, "error": payload or "", "pixels": b"", "height": 0, "width": 0}],
                                   columns=PIXEL_COLUMNS)
