"""Generate the synthetic world on disk: videos + ground truth, YOLO datasets, segmentation set.

Layout under `out_dir`:
    videos/<stem>.mp4              H.264 road scenes (mined, labelled, trained on)
    heldout_videos/, heldout_videos.parquet   other seeds' videos, only for evaluation
    videos.parquet / videos.csv    one row per video: video_uri (relative), video_label, metadata
    ground_truth/boxes.parquet     one row per drawn cue or lookalike per frame
    ground_truth/frames.parquet    one row per frame: zone state, cue and lookalike counts
    detection/                     YOLO dataset for the base detector (no lookalikes): data.yaml,
                                   images/{train,val}, labels/{train,val}, index.parquet
    heldout/{workzone,lookalike}/  held-out frames (YOLO layout + data.yaml), heldout/index.parquet
    segmentation/                  authentic/ forged/ masks/ and index.parquet
    captions/                      frames of every kind with ground-truth captions (for the demo's CLIP)
    world.json                     counts and the config hash
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pandas as pd

from engine.config import config_hash
from engine.storage import atomic_write_json, write_table
from engine.synth.camera import Camera
from engine.synth.config import SynthConfig
from engine.synth.datasets import write_caption_set, write_detection_set, write_segmentation_set
from engine.synth.render import render_background, render_frame
from engine.synth.scenario import VIDEO_LABELS, make_scenario, rng_for
from engine.synth.shapes import LOOKALIKE_KINDS
from engine.synth.video_io import write_h264

log = logging.getLogger("quarry.synth")

PART_VIDEOS = 1  # seed-sequence part id of the videos (see scenario.rng_for)
PART_HELDOUT_VIDEOS = 11
PART_ROUND_VIDEOS = 20  # + the round: fresh videos for rounds 2, 3 ...


def video_plan(counts, prefix: str = "") -> list[tuple[str, str, str | None]]:
    """(stem, kind, lookalike_kind) for every video; lookalike kinds cycle so each appears."""
    plan = [(f"{prefix}workzone_{i:04d}", "workzone", None) for i in range(counts.n_workzone)]
    plan += [(f"{prefix}lookalike_{i:04d}", "lookalike", LOOKALIKE_KINDS[i % len(LOOKALIKE_KINDS)])
             for i in range(counts.n_lookalike)]
    plan += [(f"{prefix}clean_{i:04d}", "clean", None) for i in range(counts.n_clean)]
    return plan


def write_video(cfg: SynthConfig, index: int, stem: str, kind: str, lookalike_kind: str | None,
                part: int = PART_VIDEOS, folder: str = "videos"):
    """Render and encode one video; return (metadata row, box rows, frame rows)."""
    v = cfg.videos
    camera = Camera(v.width_px, v.height_px)
    scenario = make_scenario(rng_for(cfg.seed, part, index), kind, v.duration_s, lookalike_kind)
    background = render_background(scenario, camera)
    n_frames = max(1, int(round(v.duration_s * v.fps)))
    boxes, frames = [], []

    def frames_iter():
        for frame in range(n_frames):
            img, labels, state = render_frame(scenario, camera, frame, v.fps, background)
            for label in labels:
                boxes.append({"video_stem": stem, "frame": frame, "kind": label.kind, "class_id": label.class_id,
                              "is_cue": label.is_cue, "x1": label.box[0], "y1": label.box[1], "x2": label.box[2], "y2": label.box[3]})
            n_cues = sum(label.is_cue for label in labels)
            frames.append({"video_stem": stem, "frame": frame, "t_s": frame / v.fps, "semantic_state": state,
                           "n_cues": n_cues, "n_lookalikes": len(labels) - n_cues})
            yield img

    path = cfg.out_dir / folder / f"{stem}.mp4"
    write_h264(frames_iter(), path, v.fps, v.crf)
    meta = {
        "video_uri": f"{folder}/{stem}.mp4", "video_stem": stem, "video_label": VIDEO_LABELS[kind], "kind": kind,
        "lookalike_kind": lookalike_kind, "weather": scenario.weather, "daytime": scenario.daytime,
        "scene": scenario.scene, "region": scenario.region, "fps": v.fps, "n_frames": n_frames,
        "width": v.width_px, "height": v.height_px, "duration_s": n_frames / v.fps,
    }
    return meta, boxes, frames


def write_mining_videos(cfg: SynthConfig, part: int = PART_VIDEOS, prefix: str = "") -> tuple[list[dict], dict]:
    """`cfg.videos` under `cfg.out_dir`: videos/, videos.parquet(.csv), ground_truth/; the
    videos' rows and counts."""
    out = Path(cfg.out_dir)
    metas, all_boxes, all_frames = [], [], []
    plan = video_plan(cfg.videos, prefix)
    for index, (stem, kind, lookalike_kind) in enumerate(plan):
        meta, boxes, frames = write_video(cfg, index, stem, kind, lookalike_kind, part)
        metas.append(meta)
        all_boxes += boxes
        all_frames += frames
        log.info("video %d/%d %s (%s)", index + 1, len(plan), stem, meta["video_label"])
    box_columns = ["video_stem", "frame", "kind", "class_id", "is_cue", "x1", "y1", "x2", "y2"]
    write_table(pd.DataFrame(metas), out / "videos.parquet", csv=True)
    write_table(pd.DataFrame(all_boxes, columns=box_columns), out / "ground_truth" / "boxes.parquet")
    write_table(pd.DataFrame(all_frames), out / "ground_truth" / "frames.parquet")
    return metas, {"video_frames": len(all_frames), "video_cue_boxes": sum(b["is_cue"] for b in all_boxes),
                   "video_lookalike_boxes": sum(not b["is_cue"] for b in all_boxes)}


def generate_round_videos(cfg: SynthConfig, round_index: int) -> dict:
    """Fresh videos for a later round of the loop (seed 000's "expand the hard-negative set,
    repeat"): `cfg.videos`' counts from their own seed sequence (part PART_ROUND_VIDEOS +
    round), stems prefixed `r<round>_`, under `cfg.out_dir` in the world's video layout."""
    started = time.perf_counter()
    metas, _ = write_mining_videos(cfg, PART_ROUND_VIDEOS + round_index, f"r{round_index}_")
    summary = {"round": round_index, "videos": {label: sum(m["video_label"] == label for m in metas)
                                                for label in ("tp", "fp", "clean")},
               "seconds": round(time.perf_counter() - started, 2)}
    atomic_write_json(Path(cfg.out_dir) / "world.json", summary)
    return summary


def generate_world(cfg: SynthConfig) -> dict:
    """Write the whole world under `cfg.out_dir` and return its summary (also in world.json)."""
    out = Path(cfg.out_dir)
    started = time.perf_counter()
    metas, counts = write_mining_videos(cfg)
    held = [write_video(cfg, index, stem, kind, lookalike_kind, PART_HELDOUT_VIDEOS, "heldout_videos")
            for index, (stem, kind, lookalike_kind) in enumerate(video_plan(cfg.heldout_videos, "heldout_"))]
    if held:
        write_table(pd.DataFrame([meta for meta, _, _ in held]), out / "heldout_videos.parquet", csv=True)
    videos_s = time.perf_counter() - started

    detection = write_detection_set(cfg)
    log.info("detection images: %s", detection)
    segmentation = write_segmentation_set(cfg)
    log.info("segmentation images: %s", segmentation)
    captions = write_caption_set(cfg)
    log.info("captioned images: %s", captions)
    summary = {
        "seed": cfg.seed,
        "config_hash": config_hash(cfg),
        "videos": {label: sum(m["video_label"] == label for m in metas) for label in ("tp", "fp", "clean")},
        "heldout_videos": {label: sum(m["video_label"] == label for m, _, _ in held) for label in ("tp", "fp", "clean")},
        **counts,
        "detection_images": detection,
        "segmentation_images": segmentation,
        "caption_images": captions,
        "seconds": {"videos": round(videos_s, 2), "total": round(time.perf_counter() - started, 2)},
    }
    atomic_write_json(out / "world.json", summary)
    return summary
