"""The demo's steps, each reused when its config and inputs are unchanged since the last run
in the same work dir (the report says so):

  1. synth      the world: videos with ground truth, still-image sets, captioned frames
  2. pretrain   the base detector (Ultralytics' trainer) and a tiny CLIP, scored on held-out frames
  3. mine       false-alarm mining: frames of fp/clean videos where the base model would alarm
  4. flicker    flicker mining on every video, scored against the world's ground truth
  5. label      pseudo-labels for the videos' frames, false-alarm boxes dropped by rule
  6. review     the mined candidates categorised by CLIP zero-shot and sheeted; accepted
                as hard negatives (they come from videos labelled false alarms)
  7. build      the training set: base data + labelled frames + accepted hard negatives
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from engine.config import config_hash, load_config, write_resolved_config
from engine.demo.config import CATEGORY_OF_KIND, DemoConfig
from engine.evaluate.world_truth import flicker_truth_report, load_truth
from engine.review.config import ReviewConfig
from engine.storage import atomic_write_json
from engine.synth.config import SynthConfig

log = logging.getLogger("quarry.demo")
STEPS = ("synth", "pretrain", "mine", "flicker", "label", "review", "build")


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
        log.info("step %d/%d: %s -> %s", STEPS.index(name) + 1, len(STEPS), name, out_dir)
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


def run_demo(config: DemoConfig) -> dict:
    from jobs import build, label, mine, pretrain, review, synth

    work = Path(config.work_dir)
    write_resolved_config(config, work)
    tracking_uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=work / "world", seed=config.seed, videos=config.videos, detection=config.detection,
                            segmentation=config.segmentation, captions=config.captions)
    steps["synth"] = run_step("synth", synth_cfg.out_dir, config_hash(synth_cfg), config.reuse, lambda: synth.run(synth_cfg))

    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base", evaluation=config.evaluation,
                                      training=config.base_model.model_copy(update={"seed": config.seed}), clip=config.clip)
    key = config_hash(pre_cfg) + steps["synth"]["key"]
    steps["pretrain"] = run_step("pretrain", pre_cfg.out_dir, key, config.reuse, lambda: pretrain.run(pre_cfg))
    clip_checkpoint = work / "base" / "clip.pt" if config.clip.enabled else None

    def mining(out: Path, selection) -> object:
        cfg = config.mine.model_copy(deep=True)
        cfg.input.source = str(work / "world" / "videos.parquet")
        cfg.output.out_dir = out
        cfg.selection = selection
        cfg.scoring.detector.source = str(work / "base" / "base.pt")
        cfg.scoring.clip.checkpoint = clip_checkpoint  # the CLIP pretrain trained stands in for the user's
        if cfg.tracking.tracking_uri is None:
            cfg.tracking.tracking_uri = tracking_uri
        return cfg

    mine_cfg = mining(work / "mine", config.mine.selection)
    key = config_hash(mine_cfg) + steps["pretrain"]["key"]
    steps["mine"] = run_step("mine", mine_cfg.output.out_dir, key, config.reuse, lambda: mine.run(mine_cfg))

    flicker_cfg = mining(work / "mine-flicker", config.flicker)

    def flicker_step() -> dict:
        summary = mine.run(flicker_cfg)
        candidates = pd.read_parquet(flicker_cfg.output.out_dir / "candidates.parquet")
        return {**summary, "truth": flicker_truth_report(candidates, load_truth(work / "world"))}

    key = config_hash(flicker_cfg) + steps["pretrain"]["key"]
    steps["flicker"] = run_step("flicker", flicker_cfg.output.out_dir, key, config.reuse, flicker_step)

    label_cfg = config.label.model_copy(deep=True)
    label_cfg.input.source = str(work / "world" / "videos.parquet")
    label_cfg.detector.source = str(work / "base" / "base.pt")
    label_cfg.output.out_dir = work / "label"
    label_cfg.ground_truth = work / "world"
    if label_cfg.tracking.tracking_uri is None:
        label_cfg.tracking.tracking_uri = tracking_uri
    key = config_hash(label_cfg) + steps["pretrain"]["key"]
    steps["label"] = run_step("label", label_cfg.output.out_dir, key, config.reuse, lambda: label.run(label_cfg))

    manifest = work / "mine" / "candidates.parquet"
    clip_override = [f"categorise.clip.checkpoint={clip_checkpoint}"] if clip_checkpoint else []

    def review_step() -> dict:
        reviews = manifest.parent / "reviews.jsonl"
        reviews.unlink(missing_ok=True)  # the demo's answers are its own: start them afresh
        base = [f"candidates={manifest}", f"categories={json.dumps(config.categories)}"]
        categorised = review.run(load_config(ReviewConfig, None, [*base, "command=categorise", "categorise.method=clip",
                                                                  *clip_override]))
        accepted = review.run(load_config(ReviewConfig, None, [*base, "command=accept", "select.video_labels=[fp, clean]"]))
        sheet = review.run(load_config(ReviewConfig, None, [*base, "command=sheet"]))
        from engine.review.reviews import current_reviews

        accuracy = categorisation_accuracy(pd.read_parquet(manifest), current_reviews(reviews))
        return {"categorised": categorised["by_category"], "accepted": accepted["accepted"], "sheet": sheet["sheet"],
                "category_accuracy": accuracy}

    key = config_hash(load_config(ReviewConfig, None, clip_override)) + json.dumps(config.categories) + steps["mine"]["key"]
    steps["review"] = run_step("review", work / "mine" / "sheet", key, config.reuse, review_step)

    build_cfg = config.build.model_copy(deep=True)
    build_cfg.detect.base_data = work / "world" / "detection" / "data.yaml"
    build_cfg.detect.labels = work / "label" / "labels.parquet"
    build_cfg.detect.candidates = manifest
    build_cfg.out_dir = work / "dataset"
    build_cfg.clip.checkpoint = clip_checkpoint
    key = config_hash(build_cfg) + steps["label"]["key"] + steps["review"]["key"]
    steps["build"] = run_step("build", build_cfg.out_dir, key, config.reuse, lambda: build.run(build_cfg))

    return {"work_dir": str(work), "tracking_uri": tracking_uri, "steps": steps}
