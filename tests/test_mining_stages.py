"""The scoring stage with a stubbed detector, chunk planning, and per-video assembly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from engine.mining.config import DecodeConfig, ScoringConfig
from engine.mining.pipeline import VideoAssembler, run_hash
from engine.mining.stages import ROW_COLUMNS, FrameScorer, empty_row, plan_chunks, to_frame


class StubDetector:
    """Answers like `ultralytics.YOLO.predict`: a cone and a barrel in every image."""

    names = {0: "cone", 1: "barrel", 2: "sign", 3: "barrier"}

    def __init__(self):
        self.calls = []

    def predict(self, images, **kwargs):
        self.calls.append(len(images))
        boxes = SimpleNamespace(xyxy=torch.tensor([[1.0, 2.0, 11.0, 22.0], [30.0, 5.0, 40.0, 25.0]]),
                                conf=torch.tensor([0.9, 0.6]), cls=torch.tensor([0.0, 1.0]))
        return [SimpleNamespace(boxes=boxes) for _ in images]


class StubScorer(FrameScorer):
    def setup(self):
        self.detector = StubDetector()
        self.cue_ids = [0, 1, 2, 3]
        self.clip = None


def _scorer(**decode):
    scoring = ScoringConfig(use_clip=False).model_dump(mode="json")
    return StubScorer(scoring, DecodeConfig(**decode).model_dump(mode="json"))


def _video(tiny_world, stem="workzone_0000"):
    cfg, _ = tiny_world
    return str(Path(cfg.out_dir) / "videos" / f"{stem}.mp4")


def test_plan_chunks_splits_frame_ranges(tiny_world):
    path = _video(tiny_world)  # 20 frames at 10 fps
    tasks = plan_chunks({"uri": path, "key": "v"}, DecodeConfig(stride=2, chunk_frames=3).model_dump())
    assert [(t["first_frame"], t["last_frame"]) for t in tasks] == [(0, 6), (6, 12), (12, 18), (18, 20)]
    assert {t["n_chunks"] for t in tasks} == {4} and all(t["error"] == "" for t in tasks)
    ranged = plan_chunks({"uri": path, "key": "v"}, DecodeConfig(start_s=0.5, end_s=1.2, chunk_frames=100).model_dump())
    assert [(t["first_frame"], t["last_frame"]) for t in ranged] == [(5, 12)]
    empty = plan_chunks({"uri": path, "key": "v"}, DecodeConfig(start_s=5.0).model_dump())
    assert empty[0]["error"].startswith("no frames")


def test_plan_chunks_turns_bad_files_into_error_rows(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is text, not a video")
    (task,) = plan_chunks({"uri": str(bad), "key": "notes"}, DecodeConfig().model_dump())
    assert task["n_chunks"] == 1 and "cannot open as video" in task["error"]
    (task,) = plan_chunks({"uri": str(tmp_path / "missing.mp4"), "key": "m"}, DecodeConfig().model_dump())
    assert task["error"] == "file not found"


def test_scorer_emits_frame_rows_then_chunk_end(tiny_world):
    path = _video(tiny_world)
    scorer = _scorer(stride=3, batch_frames=4)
    tasks = plan_chunks({"uri": path, "key": "wz"}, scorer.decode.model_dump())
    out = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
    assert list(out.columns) == list(ROW_COLUMNS)
    frames = out[out.row_kind == "frame"]
    assert frames.frame.tolist() == list(range(0, 20, 3))
    assert scorer.detector.calls == [4, 3], "frames are scored in batches of batch_frames"
    (end,) = out[out.row_kind == "chunk_end"].itertuples()
    assert end.n_rows == len(frames)
    first = frames.iloc[0]
    assert first.yolo_score == pytest.approx(0.9) and first.cue_count == 2 and first.cue_mask == 0b11
    assert first.fused_score == pytest.approx(0.9), "without CLIP the fused score is the YOLO score"
    assert first.t_s == pytest.approx(0.0) and frames.iloc[1].t_s == pytest.approx(0.3)
    assert json.loads(first.boxes_json)[0] == ["cone", 0.9, 1.0, 2.0, 11.0, 22.0]
    assert not any(out[c].dtype == object and c not in ("row_kind", "video_key", "boxes_json", "error") for c in out)


def test_scorer_passes_probe_errors_through(tmp_path):
    scorer = _scorer()
    task = {"uri": "x", "video_key": "x", "fps": 0.0, "first_frame": 0, "last_frame": 0, "chunk_index": 0,
            "n_chunks": 1, "error": "file not found"}
    (out,) = list(scorer(pd.DataFrame([task]).to_dict("list")))
    assert out.row_kind.tolist() == ["error"] and out.error.tolist() == ["file not found"]


def test_truncated_and_corrupt_videos_become_error_rows(bad_videos):
    scorer = _scorer()
    (task,) = plan_chunks({"uri": str(bad_videos["truncated"]), "key": "t"}, scorer.decode.model_dump())
    assert "cannot open as video" in task["error"], "moov atom cut off: not even openable"
    # corrupt packets: the container opens, decoding fails (at probe or while scoring)
    tasks = plan_chunks({"uri": str(bad_videos["corrupt"]), "key": "c"}, scorer.decode.model_dump())
    out = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
    errors = out[out.row_kind == "error"]
    assert len(errors) == 1 and errors.error.iloc[0].startswith("decode failed")
    assert "chunk_end" not in set(out.row_kind)


def _rows(key, chunk, frames, n_chunks=1):
    return [empty_row(row_kind="frame", video_key=key, chunk_index=chunk, n_chunks=n_chunks, frame=f) for f in frames]


def test_assembler_waits_for_every_chunk_and_row():
    asm = VideoAssembler()
    end0 = empty_row(row_kind="chunk_end", video_key="a", chunk_index=0, n_chunks=2, n_rows=3)
    # the end of chunk 0 arrives before two of its rows
    assert asm.add(to_frame(_rows("a", 0, [0], 2) + [end0])) == []
    assert asm.add(to_frame(_rows("a", 0, [2, 4], 2) + _rows("b", 0, [0]))) == []
    # a retried chunk re-emits rows it already sent: duplicates are dropped
    end1 = empty_row(row_kind="chunk_end", video_key="a", chunk_index=1, n_chunks=2, n_rows=2)
    (done,) = asm.add(to_frame(_rows("a", 1, [6, 8], 2) + _rows("a", 0, [2], 2) + [end1]))
    key, frames, error = done
    assert key == "a" and error is None and sorted(frames.frame) == [0, 2, 4, 6, 8]
    assert list(asm.pending) == ["b"]


def test_assembler_reports_errors():
    asm = VideoAssembler()
    err = empty_row(row_kind="error", video_key="v", chunk_index=1, n_chunks=2, error="decode failed")
    end = empty_row(row_kind="chunk_end", video_key="v", chunk_index=0, n_chunks=2, n_rows=1)
    (done,) = asm.add(to_frame(_rows("v", 0, [0], 2) + [end, err]))
    assert done[0] == "v" and done[1] is None and done[2] == "decode failed"


def test_run_hash_ignores_pool_size_only():
    from engine.config import load_config
    from engine.mining.config import MineConfig

    base = run_hash(load_config(MineConfig))
    assert run_hash(load_config(MineConfig, None, ["scoring.max_actors=8", "scoring.num_gpus_per_actor=0.5"])) == base
    assert run_hash(load_config(MineConfig, None, ["gate.min_frames=2"])) != base
    assert run_hash(load_config(MineConfig, None, ["output.out_dir=/elsewhere"])) == base


def test_tasks_layout_scores_the_same_rows_as_the_actor_layout(tiny_world):
    """decode.layout=tasks: frames decoded upstream (raw RGB bytes) score exactly as in-actor."""
    from engine.mining.stages import decode_chunks

    scorer = _scorer(stride=2, batch_frames=4, chunk_frames=3)
    decode = scorer.decode.model_dump()
    tasks = []
    for key in ("workzone_0000", "clean_0000"):
        tasks += plan_chunks({"uri": _video(tiny_world, key), "key": key}, decode)
    tasks.append({**tasks[0], "video_key": "broken", "error": "file not found"})
    in_actor = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
    decoded = pd.concat(list(decode_chunks(pd.DataFrame(tasks).to_dict("list"), decode)), ignore_index=True)
    assert set(decoded.row_kind) == {"frame", "chunk_end", "error"}
    # score in batches that mix videos, chunks and marker rows, as Ray Data would hand them over
    upstream = pd.concat([scorer._score_decoded(decoded.iloc[i : i + 5]) for i in range(0, len(decoded), 5)],
                         ignore_index=True)
    order = ["video_key", "row_kind", "chunk_index", "frame"]
    a = in_actor.sort_values(order).reset_index(drop=True)
    b = upstream.sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
