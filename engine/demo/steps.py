"""The demo's step machinery and each step's config as the demo wires it: reuse of a step
whose key (its config and its inputs' keys) is unchanged, and the configs shared by round 1
(engine/demo/run.py) and later rounds (engine/demo/rounds.py)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from engine.build.config import BuildConfig
from engine.config import config_hash, load_config
from engine.demo.config import CATEGORY_OF_KIND, DemoConfig
from engine.evaluate.config import ModelRef
from engine.evaluate.run import EvaluateConfig
from engine.evaluate.world_truth import load_truth, truth_label_texts
from engine.labels.config import LabelConfig
from engine.mining.config import MineConfig
from engine.registry.promote import PromoteConfig
from engine.review.config import ReviewConfig
from engine.review.reviews import candidate_ids
from engine.storage import atomic_write_json, atomic_write_text
from engine.train.config import TrainConfig

log = logging.getLogger("quarry.demo")


def _cached(marker: Path, key: str, reuse: bool) -> dict | None:
    """The summary stored at `marker` if it was made with `key`, else None."""
    if reuse and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("key") == key:
            return stored["summary"]
    return None


def run_step(name: str, out_dir: Path, key: str, reuse: bool, run: Callable[[], dict]) -> dict:
    """Run one step, or reuse its summary when its key (config + upstream keys) is unchanged."""
    started = time.perf_counter()
    marker = Path(out_dir) / ".demo-step.json"
    summary = _cached(marker, key, reuse)
    reused = summary is not None
    if not reused:
        log.info("step %s -> %s", name, out_dir)
        summary = run()
        atomic_write_json(marker, {"key": key, "summary": summary})
    return {**summary, "key": key, "reused": reused, "step_seconds": round(time.perf_counter() - started, 1)}


def categorisation_accuracy(candidates: pd.DataFrame, reviews: pd.DataFrame) -> dict:
    """How often CLIP's category names the lookalike the world drew (seed 000's categories)."""
    table = candidates.assign(candidate_id=candidates["video_key"] + "_f" + candidates["frame"].astype(str))
    table = table.merge(reviews, on="candidate_id")
    truth = table["lookalike_kind"].map(CATEGORY_OF_KIND)
    known = truth.notna()
    return {"candidates": int(known.sum()),
            "accuracy": round(float((table["category"][known] == truth[known]).mean()), 4) if known.any() else None}


def evaluation_step(cfg: EvaluateConfig) -> dict:
    from engine.evaluate.run import headline, run_evaluation

    result = run_evaluation(cfg)
    return {"report": result["report"], "seconds": result["seconds"],
            "models": {name: {"source": m["source"], **headline(m),
                              **({"same_weights_as": m["same_weights_as"]} if m.get("same_weights_as") else {})}
                       for name, m in result["models"].items()}}


def promotion_step(cfg: PromoteConfig, base_weights: Path) -> dict:
    """Promote the challenger over the champion; with no champion yet, the base model is
    registered as the one in service first. A refusal is a result of the demo, not a failure."""
    from engine.errors import Refused
    from engine.registry.models import register_as
    from engine.registry.promote import promote
    from engine.registry.resolve import registered_version

    uri = cfg.tracking.tracking_uri
    seeded = None
    if registered_version(uri, f"models:/{cfg.model_name}@{cfg.champion}") is None:
        seeded = register_as(uri, cfg.tracking.experiment, "detector", base_weights, cfg.model_name, cfg.champion,
                             {"quarry.job": "demo", "quarry.role": "base model"})
    try:
        summary = promote(cfg)
    except Refused as refusal:
        summary = {**refusal.details, "reason": str(refusal)}
    return {**summary, "base_registered": seeded}


def mining_config(config: DemoConfig, out: Path, selection, videos: Path, detector: Path, clip: Path | None,
                  tracking_uri: str) -> MineConfig:
    """The demo's mining settings over `videos` with `detector` (and the CLIP pretrain trained,
    standing in for the user's)."""
    cfg = config.mine.model_copy(deep=True)
    cfg.input.source = str(videos)
    cfg.output.out_dir = out
    cfg.selection = selection
    cfg.scoring.detector.source = str(detector)
    cfg.scoring.clip.checkpoint = clip
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def review_key(config: DemoConfig, clip_override: list[str]) -> str:
    """What the review step's result depends on besides its candidates: the review job's
    resolved config (CLIP checkpoint included) and the categories."""
    return config_hash(load_config(ReviewConfig, None, clip_override)) + json.dumps(config.categories)


def review_step(config: DemoConfig, manifest: Path, clip_override: list[str]) -> dict:
    """Categorise the candidates with the CLIP pretrain trained (`clip_override` names it; none
    without one, as a random CLIP's categories would be noise), accept those of false-alarm
    videos, sheet them."""
    from engine.review.reviews import current_reviews
    from jobs import review

    reviews = manifest.parent / "reviews.jsonl"
    reviews.unlink(missing_ok=True)  # the demo's answers are its own: start them afresh
    base = [f"candidates={manifest}", f"categories={json.dumps(config.categories)}"]
    categorised, accuracy = {}, None
    if clip_override:
        categorised = review.run(load_config(ReviewConfig, None, [*base, "command=categorise", "categorise.method=clip",
                                                                  *clip_override]))["by_category"]
        accuracy = categorisation_accuracy(pd.read_parquet(manifest), current_reviews(reviews))
    accepted = review.run(load_config(ReviewConfig, None, [*base, "command=accept", "select.video_labels=[fp, clean]"]))
    sheet = review.run(load_config(ReviewConfig, None, [*base, "command=sheet"]))
    return {"categorised": categorised, "accepted": accepted["accepted"], "sheet": sheet["sheet"],
            "category_accuracy": accuracy}


def label_config(config: DemoConfig, world: Path, detector: Path, out: Path, tracking_uri: str) -> LabelConfig:
    cfg = config.label.model_copy(deep=True)
    cfg.input.source = str(world / "videos.parquet")
    cfg.detector.source = str(detector)
    cfg.output.out_dir, cfg.ground_truth = out, world
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def label_edge_cases(manifest: Path, world: Path, out: Path) -> int:
    """The demo's stand-in for the person who labels edge cases: the world's ground truth, one
    YOLO file `<candidate_id>.txt` per candidate of `manifest` in `out` (what build reads)."""
    candidates = pd.read_parquet(manifest)
    frames = candidates.assign(video_stem=[Path(p).stem for p in candidates["video_path"]])
    texts = truth_label_texts(frames, load_truth(world))
    for candidate, text in zip(candidate_ids(candidates), texts):
        atomic_write_text(Path(out) / f"{candidate}.txt", text)
    return len(texts)


def build_config(config: DemoConfig, base_data: Path, labels: Path, manifest: Path, out: Path,
                 clip: Path | None, edge_cases: Path | None = None) -> BuildConfig:
    cfg = config.build.model_copy(deep=True)
    cfg.detect.base_data, cfg.detect.labels, cfg.detect.candidates = base_data, labels, manifest
    cfg.detect.edge_cases = edge_cases
    cfg.out_dir, cfg.clip.checkpoint = out, clip
    return cfg


def train_config(config: DemoConfig, data: Path, model: Path, out: Path, tracking_uri: str) -> TrainConfig:
    cfg = config.train.model_copy(deep=True)
    cfg.data, cfg.out_dir, cfg.detect.model = data, out, str(model)
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def evaluate_config(config: DemoConfig, out: Path, clip: Path | None, tracking_uri: str,
                    models: list[ModelRef]) -> EvaluateConfig:
    """`models` on the world's held-out frames and videos; events are mined with the demo's
    settings (CLIP as `evaluate.mining.scoring.use_clip` says: off, as events need only the
    gate) and cached per model weights under <work>/events, so every round shares them."""
    work = Path(config.work_dir)
    cfg = config.evaluate.model_copy(deep=True)
    cfg.world, cfg.out_dir, cfg.events_dir, cfg.models = work / "world", out, work / "events", models
    cfg.mining = mining_config(config, work / "events", config.evaluate.mining.selection, work / "world" / "videos.parquet",
                               work / "base" / "base.pt", clip, tracking_uri)
    cfg.mining.scoring.use_clip = config.evaluate.mining.scoring.use_clip
    cfg.tracking.tracking_uri = cfg.tracking.tracking_uri or tracking_uri
    return cfg
