"""Still-image sets drawn from the world: the YOLO detection set, held-out sets, segmentation set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from engine.storage import atomic_path, atomic_write_text, write_table
from engine.synth.camera import Camera
from engine.synth.captions import caption_for
from engine.synth.config import SynthConfig
from engine.synth.render import FrameLabel, render_frame
from engine.synth.scenario import make_scenario, rng_for
from engine.synth.segmentation import (
    AUTHENTIC_KINDS,
    DARK_MEAN_MAX,
    FORGERY_BANDS,
    add_smooth_artifact,
    authentic_content,
    make_authentic,
    make_copy_move,
)
from engine.synth.shapes import CUE_CLASSES, LOOKALIKE_KINDS
from engine.yolo_format import format_yolo_labels

# seed-sequence part ids (videos use 1)
PARTS = {"train": 2, "val": 3, "workzone": 4, "lookalike": 5, "authentic": 6, "forged": 7, "captions": 8,
         "heldout_authentic": 9, "heldout_forged": 10}
CAPTION_KINDS = ("workzone", *(f"lookalike:{k}" for k in LOOKALIKE_KINDS), "clean")  # cycled


def write_image(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB image atomically; the format follows the suffix (.jpg at quality 95, .png)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if Path(path).suffix.lower() in (".jpg", ".jpeg") else []
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write image {path}")


def yolo_label_text(labels: list[FrameLabel], width: int, height: int) -> str:
    """YOLO label text for the cue objects of a frame; lookalikes are never labelled."""
    cues = [label for label in labels if label.is_cue]
    return format_yolo_labels([l.class_id for l in cues], [l.box for l in cues], width, height)


def sample_frame(rng: np.random.Generator, kind: str, lookalike_kind: str | None, cfg: SynthConfig):
    """Draw a scenario and a frame that shows what `kind` is about (cues, lookalikes or neither)."""
    v = cfg.videos
    camera = Camera(v.width_px, v.height_px)
    scenario = make_scenario(rng, kind, v.duration_s, lookalike_kind)
    n_frames = max(1, int(round(v.duration_s * v.fps)))
    for _ in range(30):
        img, labels, _ = render_frame(scenario, camera, int(rng.integers(n_frames)), v.fps)
        wanted = {"workzone": any(l.is_cue for l in labels), "lookalike": any(not l.is_cue for l in labels)}
        if wanted.get(kind, True):
            break
    return img, labels, scenario


def _write_split(cfg: SynthConfig, root: Path, split: str, image_dir: Path, label_dir: Path, n: int) -> list[dict]:
    rows = []
    background = cfg.detection.background_fraction
    for i in range(n):
        rng = rng_for(cfg.seed, PARTS[split], i)
        if split == "lookalike":
            kind, lookalike_kind = "lookalike", LOOKALIKE_KINDS[i % len(LOOKALIKE_KINDS)]
        elif split == "workzone":
            kind, lookalike_kind = "workzone", None
        else:  # train / val: work zones plus plain background frames, never lookalikes
            kind, lookalike_kind = ("clean" if rng.random() < background else "workzone"), None
        img, labels, scenario = sample_frame(rng, kind, lookalike_kind, cfg)
        name = f"{split}_{i:05d}"
        write_image(image_dir / f"{name}.jpg", img)
        atomic_write_text(label_dir / f"{name}.txt", yolo_label_text(labels, img.shape[1], img.shape[0]))
        rows.append({
            "image": str((image_dir / f"{name}.jpg").relative_to(root)), "split": split, "kind": kind,
            "lookalike_kind": lookalike_kind, "weather": scenario.weather, "daytime": scenario.daytime,
            "scene": scenario.scene, "region": scenario.region, "n_cues": sum(l.is_cue for l in labels),
            "n_lookalikes": sum(not l.is_cue for l in labels),
        })
    return rows


def _write_data_yaml(path: Path, train: str, val: str) -> None:
    # No `path:` key: Ultralytics then resolves train/val against this file's folder,
    # so the world can be moved or copied.
    data = {"train": train, "val": val, "names": dict(enumerate(CUE_CLASSES))}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))


def write_detection_set(cfg: SynthConfig) -> dict[str, int]:
    """The base detector's YOLO dataset and the held-out work-zone / lookalike sets."""
    out, d = Path(cfg.out_dir), cfg.detection
    det = out / "detection"
    rows = []
    for split, n in (("train", d.n_train), ("val", d.n_val)):
        rows += _write_split(cfg, det, split, det / "images" / split, det / "labels" / split, n)
    _write_data_yaml(det / "data.yaml", "images/train", "images/val")
    write_table(pd.DataFrame(rows), det / "index.parquet")
    held = out / "heldout"
    held_rows = []
    for split, n in (("workzone", d.n_heldout_workzone), ("lookalike", d.n_heldout_lookalike)):
        held_rows += _write_split(cfg, held, split, held / split / "images", held / split / "labels", n)
        _write_data_yaml(held / split / "data.yaml", "images", "images")
    write_table(pd.DataFrame(held_rows), held / "index.parquet")
    return {"train": d.n_train, "val": d.n_val, "heldout_workzone": d.n_heldout_workzone,
            "heldout_lookalike": d.n_heldout_lookalike}


def _segmentation_rows(cfg: SynthConfig, root: Path, split: str, n_authentic: int, n_forged: int) -> list[dict]:
    """Authentic images (a share dark) and copy-move forgeries with masks, of one split; the
    held-out split draws from other seed parts than the training split."""
    s = cfg.segmentation
    prefix = "" if split == "train" else "heldout/"
    parts = ("authentic", "forged") if split == "train" else ("heldout_authentic", "heldout_forged")
    rows = []
    for i in range(n_authentic):
        rng = rng_for(cfg.seed, PARTS[parts[0]], i)
        kind = "dark" if rng.random() < s.dark_fraction else str(rng.choice(AUTHENTIC_KINDS[:3]))
        img = make_authentic(rng, kind, s.size_px)
        artifact = bool(rng.random() < s.artifact_fraction)
        if artifact:
            img = add_smooth_artifact(rng, img)
        name = f"{prefix}authentic/{prefix.strip('/') + '_' if prefix else ''}authentic_{i:05d}.png"
        write_image(root / name, img)
        rows.append({"image": name, "mask": None, "kind": "authentic", "source_kind": kind, "band": None,
                     "forgery_area_frac": 0.0, "mean_brightness": float(img.mean()), "split": split,
                     "smooth_artifact": artifact})
    bands = list(FORGERY_BANDS)
    for i in range(n_forged):
        rng = rng_for(cfg.seed, PARTS[parts[1]], i)
        source_kind = str(rng.choice(AUTHENTIC_KINDS[:3]))
        band = bands[i % len(bands)]
        forged, mask = make_copy_move(rng, authentic_content(rng, source_kind, s.size_px), band)
        stem = f"{prefix.strip('/') + '_' if prefix else ''}forged_{i:05d}"
        name, mask_name = f"{prefix}forged/{stem}.png", f"{prefix}masks/{stem}.png"
        write_image(root / name, forged)
        with atomic_path(root / mask_name) as tmp:
            cv2.imwrite(str(tmp), mask * 255)
        rows.append({"image": name, "mask": mask_name, "kind": "forged", "source_kind": source_kind, "band": band,
                     "forgery_area_frac": float(mask.mean()), "mean_brightness": float(forged.mean()), "split": split,
                     "smooth_artifact": False})
    return rows


def write_segmentation_set(cfg: SynthConfig) -> dict[str, int]:
    """The training split and a held-out split (`split` column of segmentation/index.parquet)."""
    s = cfg.segmentation
    root = Path(cfg.out_dir) / "segmentation"
    rows = _segmentation_rows(cfg, root, "train", s.n_authentic, s.n_forged)
    rows += _segmentation_rows(cfg, root, "heldout", s.n_heldout_authentic, s.n_heldout_forged)
    columns = ["image", "mask", "kind", "source_kind", "band", "forgery_area_frac", "mean_brightness", "split",
               "smooth_artifact"]
    index = pd.DataFrame(rows, columns=columns)
    index["is_dark"] = index["mean_brightness"] < DARK_MEAN_MAX
    write_table(index, root / "index.parquet")
    train = index[index["split"] == "train"]
    return {"authentic": s.n_authentic, "forged": s.n_forged, "dark": int(train["is_dark"].sum()),
            "heldout_authentic": s.n_heldout_authentic, "heldout_forged": s.n_heldout_forged}

def write_caption_set(cfg: SynthConfig) -> dict[str, int]:
    """Frames of every kind (work zone, each lookalike kind, clean road) with a caption made
    from their ground truth: `captions/images/*.jpg` and `captions/index.parquet`."""
    root = Path(cfg.out_dir) / "captions"
    rows = []
    for i in range(cfg.captions.n_images):
        rng = rng_for(cfg.seed, PARTS["captions"], i)
        kind, _, lookalike_kind = CAPTION_KINDS[i % len(CAPTION_KINDS)].partition(":")
        img, labels, scenario = sample_frame(rng, kind, lookalike_kind or None, cfg)
        name = f"images/caption_{i:05d}.jpg"
        write_image(root / name, img)
        rows.append({"image": name, "caption": caption_for(labels, scenario, rng), "kind": kind,
                     "lookalike_kind": lookalike_kind or None, "weather": scenario.weather, "daytime": scenario.daytime,
                     "scene": scenario.scene})
    write_table(pd.DataFrame(rows, columns=["image", "caption", "kind", "lookalike_kind", "weather", "daytime", "scene"]),
                root / "index.parquet")
    return {"images": len(rows)}
