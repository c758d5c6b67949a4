"""The synthetic world: real H.264 files, ground truth that matches the pixels, determinism."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import decord
import numpy as np
import pandas as pd
import pytest

from engine.synth.camera import Camera
from engine.synth.config import SynthConfig
from engine.synth.datasets import yolo_label_text
from engine.synth.render import FrameLabel, render_background, render_frame
from engine.synth.scenario import APPROACH_M, EXIT_M, EXIT_TAIL_M, make_scenario, rng_for, zone_state
from engine.synth.segmentation import DARK_MEAN_MAX, FORGERY_BANDS
from engine.synth.shapes import CUE_CLASSES, DRAWERS, draw_object, mask_box
from engine.synth.world import generate_world


def test_camera_projection_known_answer():
    cam = Camera(256, 144, height_m=1.4, horizon_frac=0.5)
    x, y = cam.ground_point(0.0, 10.0)
    assert x == pytest.approx(128.0) and y == pytest.approx(72 + 0.9 * 256 * 1.4 / 10)
    x1, y1, x2, y2 = cam.project_box(2.0, 20.0, 1.0, 2.0)
    f = 0.9 * 256
    assert (x1 + x2) / 2 == pytest.approx(128 + f * 2.0 / 20)
    assert x2 - x1 == pytest.approx(f * 1.0 / 20) and y2 - y1 == pytest.approx(f * 2.0 / 20)


def test_zone_state_transitions():
    zone = (100.0, 160.0)
    assert zone_state(None, 120.0) == "OUT"
    assert zone_state(zone, 100.0 - APPROACH_M - 0.1) == "OUT"
    assert zone_state(zone, 100.0 - APPROACH_M) == "APPROACHING"
    assert zone_state(zone, 99.9) == "APPROACHING"
    assert zone_state(zone, 100.0) == "INSIDE"
    assert zone_state(zone, 160.0 - EXIT_M) == "EXITING"
    assert zone_state(zone, 160.0 + EXIT_TAIL_M - 0.1) == "EXITING"
    assert zone_state(zone, 160.0 + EXIT_TAIL_M) == "OUT"


@pytest.mark.parametrize("kind", sorted(DRAWERS))
def test_each_drawer_stays_inside_its_box(kind):
    canvas = np.zeros((100, 120, 3), np.uint8)
    box = (30.0, 20.0, 70.0, 80.0)
    mask = draw_object(canvas, kind, box, style_color_ok(kind))
    x1, y1, x2, y2 = mask_box(mask)
    assert 29 <= x1 and 19 <= y1 and x2 <= 72 and y2 <= 82
    assert (canvas.any(axis=2) == mask).all(), "the mask is exactly the painted pixels"


def style_color_ok(kind):
    return 1.0


def test_labels_are_the_pixels_each_object_changed():
    """Removing one object from a scenario changes exactly the pixels inside its label box."""
    cam = Camera(256, 144)
    scenario = make_scenario(rng_for(3, 99, 0), "workzone", 6.0)
    scenario = dataclasses.replace(scenario, weather="clear", daytime="day")
    fps = 15
    frame = next(f for f in range(90) if sum(l.is_cue for l in render_frame(scenario, cam, f, fps)[1]) >= 3)
    image, labels, _ = render_frame(scenario, cam, frame, fps)
    checked = 0
    for obj in scenario.objects:
        if obj.kind not in CUE_CLASSES:
            continue
        without = dataclasses.replace(scenario, objects=tuple(o for o in scenario.objects if o is not obj))
        other, other_labels, _ = render_frame(without, cam, frame, fps)
        changed = np.abs(image.astype(int) - other.astype(int)).sum(axis=2) > 0
        if not changed.any():
            continue  # not in view in this frame
        (label,) = [l for l in labels if l not in other_labels]
        x1, y1, x2, y2 = label.box
        ys, xs = np.nonzero(changed)
        assert xs.min() >= x1 and xs.max() < x2 and ys.min() >= y1 and ys.max() < y2
        assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 144
        checked += 1
    assert checked >= 3


def test_yolo_label_text_normalises_cues_and_skips_lookalikes():
    labels = [FrameLabel("barrel", True, (10, 20, 30, 60)), FrameLabel("orange_truck", False, (0, 0, 50, 50))]
    assert yolo_label_text(labels, 100, 200) == "1 0.200000 0.200000 0.200000 0.200000\n"
    assert yolo_label_text(labels[1:], 100, 200) == ""


def test_videos_decode_to_expected_frames_and_size(tiny_world):
    cfg, summary = tiny_world
    videos = pd.read_parquet(Path(cfg.out_dir) / "videos.parquet")
    assert len(videos) == 7 and summary["videos"] == {"tp": 2, "fp": 4, "clean": 1}
    assert set(videos["video_label"]) == {"tp", "fp", "clean"}
    for col in ("video_uri", "video_stem", "weather", "daytime", "scene", "region", "lookalike_kind"):
        assert col in videos.columns
    for row in videos.itertuples():
        reader = decord.VideoReader(str(Path(cfg.out_dir) / row.video_uri))
        assert len(reader) == row.n_frames == 20
        assert reader[0].shape == (cfg.videos.height_px, cfg.videos.width_px, 3)
        assert reader.get_avg_fps() == pytest.approx(10)


def test_video_is_h264(tiny_world):
    import av

    cfg, _ = tiny_world
    with av.open(str(next((Path(cfg.out_dir) / "videos").glob("*.mp4")))) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_ground_truth_boxes_inside_frames_and_lookalikes_unlabelled(tiny_world):
    cfg, _ = tiny_world
    root = Path(cfg.out_dir)
    boxes = pd.read_parquet(root / "ground_truth" / "boxes.parquet")
    assert (boxes.x1 >= 0).all() and (boxes.y1 >= 0).all()
    assert (boxes.x2 <= cfg.videos.width_px).all() and (boxes.y2 <= cfg.videos.height_px).all()
    assert ((boxes.x2 > boxes.x1) & (boxes.y2 > boxes.y1)).all()
    lookalike = boxes[boxes.video_stem.str.startswith("lookalike")]
    assert len(lookalike) > 0 and not lookalike.is_cue.any()
    assert boxes[boxes.video_stem.str.startswith("workzone")].is_cue.sum() > 0
    assert boxes[boxes.video_stem.str.startswith("clean")].empty
    frames = pd.read_parquet(root / "ground_truth" / "frames.parquet")
    assert set(frames[frames.video_stem.str.startswith("lookalike")].semantic_state) == {"OUT"}
    for label_file in (root / "heldout" / "lookalike" / "labels").glob("*.txt"):
        assert label_file.read_text() == ""


def test_decoded_frames_show_orange_inside_cue_boxes(tiny_world):
    """Ground truth matches what is in the H.264 file: cue boxes hold orange pixels."""
    cfg, _ = tiny_world
    root = Path(cfg.out_dir)
    boxes = pd.read_parquet(root / "ground_truth" / "boxes.parquet")
    big = boxes[boxes.is_cue & ((boxes.x2 - boxes.x1) >= 8) & ((boxes.y2 - boxes.y1) >= 8)]
    assert len(big) >= 5
    for row in big.head(20).itertuples():
        frame = decord.VideoReader(str(root / "videos" / f"{row.video_stem}.mp4"))[row.frame].asnumpy().astype(int)
        crop = frame[row.y1 : row.y2, row.x1 : row.x2]
        r, g, b = crop[..., 0], crop[..., 1], crop[..., 2]
        orange = (r > 1.25 * g) & (r > 1.5 * b) & (r > 40)
        assert orange.mean() > 0.1, (row.video_stem, row.frame, row.kind)


def test_yolo_dataset_layout(tiny_world):
    import yaml

    cfg, _ = tiny_world
    det = Path(cfg.out_dir) / "detection"
    data = yaml.safe_load((det / "data.yaml").read_text())
    assert data["names"] == dict(enumerate(CUE_CLASSES)) and "path" not in data
    for split, n in (("train", 12), ("val", 4)):
        images = sorted((det / "images" / split).glob("*.jpg"))
        assert len(images) == n
        for image in images:
            assert (det / "labels" / split / f"{image.stem}.txt").exists()
    index = pd.read_parquet(det / "index.parquet")
    assert set(index["kind"]) <= {"workzone", "clean"}, "the base detector never sees lookalikes"
    for line in (det / "labels" / "train").glob("*.txt"):
        for row in line.read_text().split("\n")[:-1]:
            cls, *xywh = row.split()
            assert int(cls) in range(len(CUE_CLASSES)) and all(0 <= float(v) <= 1 for v in xywh)


def test_segmentation_set(tiny_world):
    import cv2

    cfg, summary = tiny_world
    root = Path(cfg.out_dir) / "segmentation"
    everything = pd.read_parquet(root / "index.parquet")
    index = everything[everything.split == "train"]
    held = everything[everything.split == "heldout"]
    assert (index.kind == "authentic").sum() == 8 and (index.kind == "forged").sum() == 6
    assert (held.kind == "authentic").sum() == 4 and (held.kind == "forged").sum() == 3
    train_bytes = {(root / p).read_bytes() for p in index.image}
    assert not any((root / p).read_bytes() in train_bytes for p in held.image), "held-out images are other images"
    dark = index[index.source_kind == "dark"]
    assert len(dark) >= 1 and (dark.mean_brightness < DARK_MEAN_MAX).all()
    assert summary["segmentation_images"]["dark"] == int(index.is_dark.sum())
    for row in everything[everything.kind == "forged"].itertuples():
        mask = cv2.imread(str(root / row.mask), cv2.IMREAD_GRAYSCALE)
        low, high = FORGERY_BANDS[row.band]
        assert set(np.unique(mask)) == {0, 255}
        # patch sides are whole pixels, so allow one row/column of rounding
        assert low * 0.7 <= (mask > 0).mean() <= high * 1.3


def _digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".mp4", ".txt", ".png", ".jpg"))
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    def world(seed, name):
        cfg = SynthConfig.model_validate({
            "out_dir": str(tmp_path / name), "seed": seed,
            "videos": {"n_workzone": 1, "n_lookalike": 1, "n_clean": 0, "duration_s": 1.0, "fps": 8},
            "heldout_videos": {"n_workzone": 1, "n_lookalike": 0, "n_clean": 0},
            "detection": {"n_train": 3, "n_val": 1, "n_heldout_workzone": 1, "n_heldout_lookalike": 1},
            "segmentation": {"n_authentic": 2, "n_forged": 2, "size_px": 48, "n_heldout_authentic": 1,
                             "n_heldout_forged": 1},
            "captions": {"n_images": 3},
        })
        generate_world(cfg)
        return _digest(tmp_path / name)

    a, b, c = world(5, "a"), world(5, "b"), world(6, "c")
    assert a == b and len(a) > 10
    assert a.keys() == c.keys() and a != c


def test_background_is_static_and_frames_move():
    cam = Camera(128, 72)
    scenario = make_scenario(rng_for(1, 1, 0), "clean", 2.0)
    bg = render_background(scenario, cam)
    first, _, _ = render_frame(scenario, cam, 0, 10, bg)
    again, _, _ = render_frame(scenario, cam, 0, 10)
    later, _, _ = render_frame(scenario, cam, 15, 10, bg)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, later)
