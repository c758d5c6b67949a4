"""Listing inputs (folder, glob, manifest, object-store prefix), safe keys, and decoders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import ConfigError
from engine.mining.inputs import assign_keys, list_inputs
from engine.mining.summary import summarize_candidates
from engine.storage import local_copy, safe_key
from engine.video.decode import decode_frames, probe_video

EXT = [".mp4"]


@pytest.mark.reliability("security")
def test_safe_keys_and_collisions():
    assert safe_key("clip 01") == "clip_01"
    assert safe_key("..a..b") == "_a_b"
    assert safe_key("vidéo") == "video"
    keys = assign_keys(["/a/x.mp4", "/b/x.mp4", "/c/ok_1.mp4", "/d/a b.mp4", "/e/漢字.mp4"])
    assert keys[0] != keys[1] and keys[0].startswith("x-") and keys[1].startswith("x-")
    assert keys[2] == "ok_1"
    assert keys[3].startswith("a_b-") and keys[4].startswith("video-")
    assert assign_keys(["/a/x.mp4", "/b/x.mp4"]) == keys[:2], "keys are a function of the inputs"


def test_folder_glob_and_single_file(tiny_world):
    cfg, _ = tiny_world
    videos = Path(cfg.out_dir) / "videos"
    (videos / "readme.txt").write_text("not a video")
    folder = list_inputs(str(videos), EXT)
    assert [v.key for v in folder] == sorted(p.stem for p in videos.glob("*.mp4"))
    assert all(v.video_label == "unknown" for v in folder)
    assert len(list_inputs(str(videos / "lookalike_*.mp4"), EXT)) == 4
    assert len(list_inputs(str(videos / "clean_0000.mp4"), EXT)) == 1
    assert len(list_inputs(str(videos), EXT, limit=2)) == 2


@pytest.mark.reliability("bad input")
def test_links_in_a_folder_are_listed_and_a_link_to_nowhere_is_an_error_in_the_users_words(tiny_world, tmp_path):
    import os

    from engine.video.decode import VideoDecodeError, probe_video

    cfg, _ = tiny_world
    good = Path(cfg.out_dir) / "videos" / "workzone_0000.mp4"
    folder = tmp_path / "videos"
    folder.mkdir()
    os.symlink(good, folder / "linked.mp4")
    os.symlink(tmp_path / "vanished.mp4", folder / "dangling.mp4")
    listed = list_inputs(str(folder), EXT)
    assert [v.key for v in listed] == ["dangling", "linked"], "a link to nowhere is listed, never silently dropped"
    assert [v.key for v in list_inputs(str(folder / "*.mp4"), EXT)] == ["dangling", "linked"]
    assert probe_video(str(folder / "linked.mp4")).n_frames > 0
    with pytest.raises(VideoDecodeError, match=r"a link to a missing file \(.*vanished.mp4\)"):
        probe_video(str(folder / "dangling.mp4"))


@pytest.mark.reliability("bad input")
def test_decoder_errors_carry_no_cpp_source_paths():
    from engine.video.decode import decoder_message

    cpp = RuntimeError("[18:41:50] /github/workspace/src/video/ffmpeg/threaded_decoder.cc:218: Check failed: "
                       "avcodec_send_packet(dec_ctx_.get(), pkt.get()) >= 0 (-1094995529 vs. 0) Thread worker: Error sending packet.")
    assert decoder_message(cpp) == "corrupt video data: the decoder rejected a packet"
    assert decoder_message(RuntimeError("Error reading /x/clip.mp4...")) == "not a video FFmpeg can read, or cut short"
    other = decoder_message(RuntimeError("[10:00:00] /src/video/video_reader.cc:12: Check failed: width > 0\nmore"))
    assert other == "width > 0"


def test_manifest_carries_labels_and_metadata(tiny_world):
    cfg, _ = tiny_world
    inputs = list_inputs(str(Path(cfg.out_dir) / "videos.parquet"), EXT)
    first = next(v for v in inputs if v.key == "workzone_0000")
    assert first.video_label == "tp" and first.metadata["weather"] in ("clear", "overcast", "rain", "fog")
    assert Path(first.uri).is_file(), "relative URIs resolve against the manifest's folder"


@pytest.mark.reliability("bad input")
def test_manifest_and_source_errors(tmp_path):
    bad = tmp_path / "m.csv"
    pd.DataFrame({"path": ["a.mp4"]}).to_csv(bad, index=False)
    with pytest.raises(ConfigError, match="needs a video_uri column"):
        list_inputs(str(bad), EXT)
    pd.DataFrame({"video_uri": ["a.mp4"], "video_label": ["maybe"]}).to_csv(bad, index=False)
    with pytest.raises(ConfigError, match=r"video_label values \['maybe'\]"):
        list_inputs(str(bad), EXT)
    with pytest.raises(ConfigError, match="no such file, folder"):
        list_inputs(str(tmp_path / "nothing-here"), EXT)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="matched no videos"):
        list_inputs(str(tmp_path / "empty"), EXT)


def test_object_store_prefix_through_fsspec(tiny_world):
    """`memory://` stands in for s3:// here: listed and fetched through the same code."""
    import fsspec

    cfg, _ = tiny_world
    fs = fsspec.filesystem("memory")
    data = (Path(cfg.out_dir) / "videos" / "clean_0000.mp4").read_bytes()
    fs.pipe("/bucket/cams/day1/a.mp4", data)
    fs.pipe("/bucket/cams/day2/b.mp4", data)
    fs.pipe("/bucket/cams/notes.txt", b"x")
    inputs = list_inputs("memory://bucket/cams", EXT)
    assert [v.uri for v in inputs] == ["memory://bucket/cams/day1/a.mp4", "memory://bucket/cams/day2/b.mp4"]
    with local_copy(inputs[0].uri) as path:
        assert Path(path).read_bytes() == data
        assert probe_video(path).n_frames == 20
    assert not Path(path).exists(), "the temporary copy is removed"


def test_pyav_and_decord_decode_the_same_frames(tiny_world):
    cfg, _ = tiny_world
    path = str(Path(cfg.out_dir) / "videos" / "workzone_0001.mp4")
    assert probe_video(path, "pyav") == probe_video(path, "decord")
    frames = range(1, 20, 3)
    a = list(decode_frames(path, frames, (128, 72), batch_frames=4, backend="decord"))
    b = list(decode_frames(path, frames, (128, 72), batch_frames=4, backend="pyav"))
    assert [ids.tolist() for ids, _ in a] == [[1, 4, 7, 10], [13, 16, 19]] == [ids.tolist() for ids, _ in b]
    pixels_a = np.concatenate([p for _, p in a]).astype(int)
    pixels_b = np.concatenate([p for _, p in b]).astype(int)
    assert pixels_a.shape == pixels_b.shape == (7, 72, 128, 3)
    assert np.abs(pixels_a - pixels_b).mean() < 4.0  # FFmpeg's scaler vs OpenCV's INTER_AREA
    native_a = np.concatenate([p for _, p in decode_frames(path, frames, backend="decord")])
    native_b = np.concatenate([p for _, p in decode_frames(path, frames, backend="pyav")])
    assert np.array_equal(native_a, native_b), "both wrap FFmpeg's H.264 decoder: identical pixels"
    with pytest.raises(ValueError, match="unknown decoder backend"):
        list(decode_frames(path, frames, backend="torchcodec"))


def test_summary_distributions_known_answer():
    candidates = pd.DataFrame({
        "yolo_score": [0.95, 0.85, 0.5, 0.2],
        "fused_score": [0.8, 0.7, 0.6, 0.5],
        "gate_confidence": [0.9, 0.72, 0.6, 0.4],
        "gate_pass": [True, True, True, False],
        "semantic_state": ["INSIDE", "INSIDE", "APPROACHING", "OUT"],
        "cue_count": [0, 4, 12, 30],
        "sustained_cues": [2, 3, 5, 7],
    })
    s = summarize_candidates(candidates, min_cue_kinds=2)
    assert s["yolo_score"][">=0.8"] == {"count": 2, "pct": 50.0} and s["yolo_score"][">=0.9"]["count"] == 1
    assert s["yolo_score"]["mean"] == pytest.approx(0.625) and s["yolo_score"]["min"] == 0.2
    assert s["gate_confidence"][">=0.7"]["count"] == 2 and s["gate_confidence"][">=0.85"]["count"] == 1
    assert s["semantic_state"] == {"OUT": 1, "APPROACHING": 1, "INSIDE": 2, "EXITING": 0}
    assert s["cue_count_bins"] == {"0-2": 1, "3-5": 1, "6-10": 0, "11-20": 1, "21+": 1}
    assert s["sustained_cues"] == {"2": 1, "3": 1, "4": 0, "5+": 2}
    empty = summarize_candidates(candidates.iloc[:0], 2)
    assert empty["candidates"] == 0 and empty["yolo_score"]["mean"] is None
