"""The scoring stage with a stubbed detector, chunk planning, and per-video assembly."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from engine.mining.config import ScoringConfig
from engine.mining.identity import model_identity, run_hash
from engine.mining.stages import ROW_COLUMNS, FrameScorer, empty_row, to_frame
from engine.video.chunks import DecodeConfig, VideoAssembler, plan_chunks


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


class OrangeDetector:
    """Answers like `ultralytics.YOLO.predict` from the pixels: one "cone" box around the
    orange pixels of each (BGR) image, confidence = their share of the image. A wrong
    reshape, a swapped channel order or a wrong frame changes its answer."""

    names = {0: "cone", 1: "barrel", 2: "sign", 3: "barrier"}

    def predict(self, images, **kwargs):
        results = []
        for bgr in images:
            b, g, r = (bgr[..., i].astype(int) for i in range(3))
            orange = (r > 150) & (g > 40) & (g < 170) & (b < 110) & (r - b > 90)
            ys, xs = np.nonzero(orange)
            if len(xs):
                xyxy = torch.tensor([[xs.min(), ys.min(), xs.max() + 1.0, ys.max() + 1.0]], dtype=torch.float32)
                conf, cls = torch.tensor([min(1.0, 0.2 + 20 * orange.mean())]), torch.tensor([0.0])
            else:
                xyxy, conf, cls = torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0)
            results.append(SimpleNamespace(boxes=SimpleNamespace(xyxy=xyxy, conf=conf, cls=cls)))
        return results


class StubScorer(FrameScorer):
    detector_class = StubDetector

    def setup(self):
        self.detector = self.detector_class()
        self.cue_ids = [0, 1, 2, 3]
        self.clip = None
        if self.scoring.use_clip:
            self._setup_clip()  # the real (tiny, seeded) CLIP


class OrangeScorer(StubScorer):
    detector_class = OrangeDetector


def _scorer(cls=StubScorer, use_clip=False, **decode):
    scoring = ScoringConfig(use_clip=use_clip).model_dump(mode="json")
    return cls(scoring, DecodeConfig(**decode).model_dump(mode="json"))


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


@pytest.mark.reliability("bad input")
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


@pytest.mark.reliability("bad input")
def test_scorer_passes_probe_errors_through(tmp_path):
    scorer = _scorer()
    task = {"uri": "x", "video_key": "x", "fps": 0.0, "first_frame": 0, "last_frame": 0, "chunk_index": 0,
            "n_chunks": 1, "native_width": 0, "native_height": 0, "error": "file not found"}
    (out,) = list(scorer(pd.DataFrame([task]).to_dict("list")))
    assert out.row_kind.tolist() == ["error"] and out.error.tolist() == ["file not found"]


@pytest.mark.reliability("bad input")
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


@pytest.mark.reliability("bad input")
def test_a_video_whose_chunks_end_without_frames_is_an_error(listed_but_undecodable_video):
    """PyAV probes the cut file's full frame count, then decodes nothing past the cut: every
    chunk ends with 0 rows. The video must become an error, not crash the driver."""
    from engine.video.chunks import NO_FRAMES
    from engine.video.decode import probe_video

    assert probe_video(str(listed_but_undecodable_video), "pyav").n_frames == 20
    scorer = _scorer(backend="pyav", start_s=1.0, chunk_frames=2)
    tasks = plan_chunks({"uri": str(listed_but_undecodable_video), "key": "cut"}, scorer.decode.model_dump())
    assert len(tasks) > 1 and not any(t["error"] for t in tasks)
    out = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
    assert set(out.row_kind) == {"chunk_end"} and (out.n_rows == 0).all()
    (done,) = VideoAssembler().add(out)
    assert done == ("cut", None, NO_FRAMES)


def test_assembler_reports_errors():
    asm = VideoAssembler()
    err = empty_row(row_kind="error", video_key="v", chunk_index=1, n_chunks=2, error="decode failed")
    end = empty_row(row_kind="chunk_end", video_key="v", chunk_index=0, n_chunks=2, n_rows=1)
    (done,) = asm.add(to_frame(_rows("v", 0, [0], 2) + [end, err]))
    assert done[0] == "v" and done[1] is None and done[2] == "decode failed"


def test_run_hash_ignores_pool_size_only():
    from engine.config import load_config
    from engine.mining.config import MineConfig

    def rh(*overrides):
        cfg = load_config(MineConfig, None, list(overrides))
        return run_hash(cfg, model_identity(cfg))

    base = rh()
    assert rh("scoring.max_actors=8", "scoring.num_gpus_per_actor=0.5") == base
    assert rh("output.out_dir=/elsewhere") == base
    for changed in ("gate.min_frames=2", "decode.stride=3", "selection.quota_per_video=9", "scoring.cue_conf=0.5",
                    "scoring.clip.arch=ViT-B-32"):
        assert rh(changed) != base, changed


def test_run_hash_follows_the_checkpoint_bytes(tmp_path):
    """Retraining base.pt in place (same path, new bytes) must redo every video."""
    from engine.config import load_config
    from engine.mining.config import MineConfig

    weights, clip = tmp_path / "base.pt", tmp_path / "clip.pt"
    weights.write_bytes(b"round 1")
    clip.write_bytes(b"clip 1")
    cfg = load_config(MineConfig, None, [f"scoring.detector.source={weights}", f"scoring.clip.checkpoint={clip}"])
    first = model_identity(cfg)
    weights.write_bytes(b"round 2")
    second = model_identity(cfg)
    assert first["detector"] != second["detector"] and first["clip"] == second["clip"]
    assert run_hash(cfg, first) != run_hash(cfg, second)
    clip.write_bytes(b"clip 2")
    assert model_identity(cfg)["clip"] != second["clip"]


def test_tasks_layout_scores_the_same_rows_as_the_actor_layout(tiny_world):
    """decode.layout=tasks: frames decoded upstream (raw RGB bytes) score exactly as in-actor,
    with a detector and a CLIP whose answers depend on every pixel."""
    from engine.mining.stages import decode_chunks

    scorer = _scorer(OrangeScorer, use_clip=True, stride=2, batch_frames=4, chunk_frames=3)
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
    frames = a[a.row_kind == "frame"]
    assert (frames.n_boxes > 0).any() and (frames.n_boxes == 0).any(), "the detector saw the pixels"
    assert frames.clip_p_workzone.nunique() > 1, "CLIP saw the pixels"
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


def test_boxes_are_in_native_pixels_when_decoding_smaller(tiny_world):
    """decode.width_px halves the frames; stored boxes still land on the native-size objects."""
    path = _video(tiny_world)  # 256 x 144
    rows = {}
    for size in ({}, {"width_px": 128, "height_px": 72}):
        scorer = _scorer(OrangeScorer, stride=5, **size)
        tasks = plan_chunks({"uri": path, "key": "wz"}, scorer.decode.model_dump())
        out = pd.concat(list(scorer(pd.DataFrame(tasks).to_dict("list"))), ignore_index=True)
        rows[bool(size)] = out[out.row_kind == "frame"].set_index("frame")
    native, small = rows[False], rows[True]
    both = [f for f in native.index if native.n_boxes[f] and small.n_boxes[f]]
    assert both, "orange objects are visible at both sizes"
    for frame in both:
        (_, _, *box_native), = json.loads(native.boxes_json[frame])
        (_, _, *box_small), = json.loads(small.boxes_json[frame])
        # a colour threshold on a resized frame moves an edge by a few pixels; unscaled boxes
        # (decoded pixels) would be off by half the frame
        assert np.allclose(box_small, box_native, atol=10.0), (frame, box_small, box_native)
    assert small.cue_area_frac[both].to_numpy() == pytest.approx(native.cue_area_frac[both].to_numpy(), abs=0.02)


def test_run_hash_is_the_same_for_a_copy_of_the_checkpoints(tmp_path):
    """A registry download of the same weights (promote after evaluate) reuses the mining."""
    import shutil

    from engine.config import load_config
    from engine.mining.config import MineConfig

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "base.pt").write_bytes(b"weights")
        shutil.copyfile(tmp_path / folder / "base.pt", tmp_path / folder / "clip.pt")

    def rh(folder: str, content: bytes = b"weights") -> str:
        (tmp_path / folder / "base.pt").write_bytes(content)
        cfg = load_config(MineConfig, None, [f"scoring.detector.source={tmp_path / folder / 'base.pt'}",
                                             f"scoring.clip.checkpoint={tmp_path / folder / 'clip.pt'}"])
        return run_hash(cfg, model_identity(cfg))

    assert rh("a") == rh("b")
    assert rh("a") != rh("b", b"other weights")


def test_a_run_without_candidates_keeps_the_inputs_metadata_columns(tmp_path):
    """A model that no longer fires mines nothing; readers of the manifest still find every column
    (the demo's second round read `lookalike_kind` from such a manifest and crashed)."""
    from engine.attempts import record_done
    from engine.mining.inputs import VideoInput
    from engine.mining.outputs import CANDIDATE_COLUMNS, rebuild_tables
    from engine.storage import write_table

    videos = [VideoInput(f"/v/{k}.mp4", k, "fp", {"kind": "lookalike", "lookalike_kind": "orange_truck"}) for k in "ab"]
    for video in videos:
        write_table(pd.DataFrame(columns=CANDIDATE_COLUMNS), tmp_path / "parts" / f"{video.key}.parquet")
        record_done(tmp_path, video.key, {"uri": video.uri, "candidates": 0})
    candidates, errors = rebuild_tables(tmp_path, videos, csv=False)
    assert candidates.empty and errors.empty
    assert list(pd.read_parquet(tmp_path / "candidates.parquet").columns) == [*CANDIDATE_COLUMNS, "kind", "lookalike_kind"]
