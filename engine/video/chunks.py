"""Videos as frame-range tasks: how a job decodes long videos on many workers.

`plan_chunks` probes a video and splits its sampled frames into tasks of `chunk_frames`;
`decode_task` decodes one task in batches; `VideoAssembler` collects the rows of a video's
tasks, in any order and with retried duplicates, until every task has ended. A video that cannot be probed or decoded becomes
an error, never an exception, so it reaches its job's errors table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Literal

import pandas as pd
from pydantic import Field, model_validator

from engine.config import Section
from engine.storage import local_copy
from engine.video.decode import VideoDecodeError, decode_frames

NO_FRAMES = "decoded no frames (the file lists frames that could not be read)"


class DecodeConfig(Section):
    """How frames are decoded (on CPU), at which stride and size, in which chunks."""

    backend: Literal["decord", "pyav"] = "decord"
    layout: Literal["actor", "tasks"] = Field("actor", description=(
        "actor: the scoring actor decodes its chunks (fastest on CPU nodes, frames never cross the object "
        "store); tasks: CPU tasks decode and stream frames to the actors (many CPUs feed one GPU)"))
    stride: int = Field(2, ge=1, le=1000, description="use every Nth frame")
    width_px: int | None = Field(None, ge=16, le=8192, description="decode width (None: native); height too if set")
    height_px: int | None = Field(None, ge=16, le=8192)
    start_s: float = Field(0.0, ge=0.0, description="first second of each video to read")
    end_s: float | None = Field(None, gt=0.0, description="last second (None: to the end)")
    chunk_frames: int = Field(600, ge=1, description="videos with more sampled frames are split into ranges of this size")
    batch_frames: int = Field(32, ge=1, le=4096, description="frames per model batch")

    @model_validator(mode="after")
    def _both_or_neither_size(self):
        if (self.width_px is None) != (self.height_px is None):
            raise ValueError("decode.width_px and decode.height_px must be set together")
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"decode.end_s ({self.end_s}) must be after decode.start_s ({self.start_s})")
        return self


def plan_chunks(video: dict, decode: dict) -> list[dict]:
    """Probe one video and split its frame range into tasks (Ray Data flat_map).

    A video that cannot be probed becomes one task row carrying the error, so it still
    reaches the driver and lands in the errors table.
    """
    from engine.video.decode import probe_video

    cfg = DecodeConfig.model_validate(decode)
    extra = {k: v for k, v in video.items() if k not in ("uri", "key")}  # e.g. video_label: passed through
    base = {**extra, "uri": video["uri"], "video_key": video["key"], "fps": 0.0, "first_frame": 0, "last_frame": 0,
            "native_width": 0, "native_height": 0, "error": ""}
    try:
        with local_copy(video["uri"]) as path:
            info = probe_video(path, cfg.backend)
    except VideoDecodeError as exc:
        return [{**base, "chunk_index": 0, "n_chunks": 1, "error": exc.reason}]
    except OSError as exc:  # unreadable remote object, permissions
        return [{**base, "chunk_index": 0, "n_chunks": 1, "error": f"cannot read: {exc}"}]
    first = min(int(round(cfg.start_s * info.fps)), info.n_frames)
    last = info.n_frames if cfg.end_s is None else min(int(round(cfg.end_s * info.fps)), info.n_frames)
    if last <= first:
        return [{**base, "chunk_index": 0, "n_chunks": 1, "error": f"no frames in [{cfg.start_s}, {cfg.end_s}) s"}]
    span = cfg.chunk_frames * cfg.stride  # raw frames per chunk, a multiple of the stride
    starts = list(range(first, last, span))
    return [{**base, "fps": info.fps, "native_width": info.width, "native_height": info.height, "chunk_index": i,
             "n_chunks": len(starts), "first_frame": s, "last_frame": min(s + span, last)} for i, s in enumerate(starts)]


def task_ids(task) -> dict:
    return {"video_key": task.video_key, "chunk_index": int(task.chunk_index), "n_chunks": int(task.n_chunks)}


def decode_task(task, decode: DecodeConfig) -> Iterator[tuple[str, object]]:
    """Decode one chunk task: ("frames", (frame ids, RGB batch)) per batch, then ("end", None);
    or ("error", reason) when the video was unreadable at planning or fails while decoding."""
    if task.error:  # the video could not even be probed
        yield "error", task.error
        return
    try:
        with local_copy(task.uri) as path:
            frames = range(int(task.first_frame), int(task.last_frame), int(decode.stride))
            size = (decode.width_px, decode.height_px) if decode.width_px else None
            for batch in decode_frames(path, frames, size, decode.batch_frames, decode.backend):
                yield "frames", batch
    except VideoDecodeError as exc:
        yield "error", exc.reason
        return
    yield "end", None


@dataclass
class _Pending:
    frames: list = field(default_factory=list)
    ended: dict = field(default_factory=dict)  # chunk index -> frame rows the chunk emitted
    errors: list = field(default_factory=list)
    n_chunks: int = 0


class VideoAssembler:
    """Collects scored rows per video and reports videos whose chunks have all ended."""

    def __init__(self):
        self.pending: dict[str, _Pending] = {}

    def add(self, rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame | None, str | None]]:
        """Add a batch; return (key, frames, error) for each video that just became complete."""
        finished = []
        for key, group in rows.groupby("video_key", sort=False):
            p = self.pending.setdefault(key, _Pending())
            p.n_chunks = int(group["n_chunks"].max())
            p.frames.append(group[group["row_kind"] == "frame"])
            for row in group[group["row_kind"] == "chunk_end"].itertuples():
                p.ended[int(row.chunk_index)] = int(row.n_rows)
            for row in group[group["row_kind"] == "error"].itertuples():
                p.ended[int(row.chunk_index)] = 0
                p.errors.append(row.error)
            if len(p.ended) < p.n_chunks:
                continue
            frames = pd.concat(p.frames, ignore_index=True).drop_duplicates(["chunk_index", "frame"])
            per_chunk = frames.groupby("chunk_index").size()
            if any(per_chunk.get(c, 0) < n for c, n in p.ended.items()):
                continue  # a chunk's end arrived before some of its rows; wait for them
            del self.pending[key]
            if p.errors:
                finished.append((key, None, p.errors[0]))
            elif frames.empty:  # every chunk ended without a frame: the container listed frames it could not give
                finished.append((key, None, NO_FRAMES))
            else:
                finished.append((key, frames, None))
        return finished
