"""`quarry evaluate`: one or several models side by side on held-out data: frames (object and
frame level, slices, calibration, TTA), videos (events through the mining gate), segmentation
images; an HTML report, a JSON of every number, an MLflow run."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from engine.config import ConfigError, Section, config_hash
from engine.evaluate.config import ModelRef
from engine.mining.config import GateConfig, MineConfig, ScoringConfig, SelectionConfig
from engine.raycluster import RayConfig
from engine.staging import publish_now
from engine.storage import atomic_path, atomic_write_json
from engine.tracking import REGISTRY_STORE_DIR, TrackingConfig, log_job_run, resolve_tracking_uri

log = logging.getLogger("quarry.evaluate")


class EvaluateConfig(Section):
    """`quarry evaluate`: models side by side on held-out frames, videos or segmentation images."""

    task: Literal["detect", "segment"] = "detect"
    models: list[ModelRef] = Field([ModelRef(name="base", source="runs/base/base.pt")], min_length=1)
    world: Path = Field(Path("runs/world"), description="a synthetic world: its heldout/ frames, heldout_videos, segmentation")
    frames: bool = Field(True, description="detect: evaluate on <world>/heldout frames")
    videos: Path | None = Field(None, description="detect: a video manifest for event metrics (default <world>/heldout_videos.parquet)")
    # without CLIP: an event is a run of frames the gate passes, and the gate reads only the
    # detector's cues (engine/mining/gating.py); CLIP's score only ranks candidates
    mining: MineConfig = Field(MineConfig(scoring=ScoringConfig(use_clip=False), gate=GateConfig(min_cue_kinds=1),
                                          selection=SelectionConfig(quota_per_video=1)),
                               description="detect videos: the mining settings (decode, scoring, gate) events are judged with")
    events_dir: Path | None = Field(None, description=(
        "detect videos: mining outputs, one folder per model weights digest (reused by later runs, whatever file "
        "holds the weights); default <out_dir>/events"))
    merge_gap_frames: int = Field(5, ge=0, description="alarm runs this many sampled frames apart are one event")
    conf_threshold: float = Field(0.25, ge=0.0, le=1.0)
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0)
    imgsz: int = Field(256, ge=32, le=4096, multiple_of=32)
    tta: bool = Field(False, description="detect: Ultralytics' test-time augmentation (flips, scales)")
    slices: list[str] = Field(["weather", "daytime", "scene", "region", "lookalike_kind"],
                              description="metadata columns each metric is broken down by")
    calibration_bins: int = Field(10, ge=2, le=100)
    ensemble: bool = Field(False, description="segment: one weighted ensemble of the models instead of side by side")
    seg_threshold: float = Field(0.75, gt=0.0, lt=1.0)
    seg_min_fp_ratio: float = Field(0.001, ge=0.0, le=1.0)
    seg_imgsz: int = Field(128, ge=32, le=4096, multiple_of=32)
    gallery: int = Field(6, ge=0, le=100, description="worst false positives and misses shown per model")
    out_dir: Path = Path("runs/evaluate")
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-evaluate")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _names(self):
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"models: names must be distinct, got {names}")
        return self


def _detect(cfg: EvaluateConfig, models: dict, tracking_uri: str | None) -> tuple[dict, object, dict]:
    from engine.evaluate.frames import detect_all, evaluate_frames, heldout_frames
    from engine.evaluate.videos import evaluate_videos
    from engine.models.detector import build_detector, weights_digest

    results, dets_by_model, frames_table = {}, {}, None
    videos = cfg.videos or (Path(cfg.world) / "heldout_videos.parquet")
    scored = {}  # weights digest -> the model first scored with those weights
    for name, (weights, info) in models.items():
        entry = {"source": info["source"], **({"version": info["version"]} if "version" in info else {})}
        detector = build_detector(str(weights))
        digest = weights_digest(detector.model)
        twin = scored.setdefault(digest, name)
        if twin != name:  # e.g. the search's best trial was the fine-tune's own settings: the same model, scored once
            log.info("%s has the weights of %s: its figures are %s's", name, twin, twin)
            results[name] = {**entry, **{k: results[twin][k] for k in ("frames", "events") if k in results[twin]},
                             "same_weights_as": twin}
            if twin in dets_by_model:
                dets_by_model[name] = dets_by_model[twin]
            continue
        if cfg.frames:
            frames_table = heldout_frames(Path(cfg.world) / "heldout")
            dets = detect_all(detector, frames_table, cfg.imgsz, cfg.tta)
            dets_by_model[name] = dets
            entry["frames"] = evaluate_frames(dets, frames_table, cfg.conf_threshold, cfg.iou_threshold, cfg.slices,
                                              cfg.calibration_bins)
        if Path(videos).is_file():
            events_dir = Path(cfg.events_dir or Path(cfg.out_dir) / "events") / digest[:16]
            entry["events"] = evaluate_videos(_events_model(Path(weights), events_dir), cfg.mining, Path(videos),
                                              events_dir, cfg.merge_gap_frames)
        results[name] = entry
    return results, frames_table, dets_by_model


def _events_model(weights: Path, events_dir: Path) -> Path:
    """The file the events in `events_dir` (one folder per weights digest) are mined with: the
    first file evaluated with those weights, kept there. Another file with the same weights (a
    checkpoint that records other metrics beside them) is then the same model to the mining run,
    which finds its videos done, in this evaluation or a later one (`quarry promote`'s)."""
    if weights.suffix.lower() != ".pt":  # an architecture: the mining run builds its random weights the same way
        return weights
    kept = events_dir / "detector.pt"
    if not kept.is_file():
        with atomic_path(kept) as tmp:
            shutil.copyfile(weights, tmp)
        publish_now(kept)  # scoring actors on any node read it from the store
    return kept


def _segment(cfg: EvaluateConfig, models: dict) -> dict:
    from engine.evaluate.segmentation import evaluate_segmentation, heldout_images
    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from engine.segment.metrics import FpRule

    images = heldout_images(cfg.world)
    rule = FpRule(cfg.seg_threshold, cfg.seg_min_fp_ratio, 0)
    built = {ref.name: build_segmenter(SegmenterSpec(arch=ref.arch, encoder=ref.encoder, checkpoint=models[ref.name][0]))
             for ref in cfg.models}
    columns = ["source_kind", "smooth_artifact", "is_dark"]
    if cfg.ensemble:
        weights = [ref.weight for ref in cfg.models]
        name = "ensemble(" + ", ".join(f"{r.name} x{r.weight}" for r in cfg.models) + ")"
        return {name: {"source": "weighted ensemble", "segmentation": evaluate_segmentation(
            list(built.values()), weights, images, cfg.seg_imgsz, rule, columns)}}
    return {name: {"source": models[name][1]["source"],
                   "segmentation": evaluate_segmentation([model], [1.0], images, cfg.seg_imgsz, rule, columns)}
            for name, model in built.items()}


def run_evaluation(cfg: EvaluateConfig) -> dict:
    from engine.evaluate.report import write_report
    from engine.registry.resolve import resolve_model

    started = time.perf_counter()
    out = Path(cfg.out_dir)
    if not Path(cfg.world).is_dir():
        raise ConfigError(f"world = {str(cfg.world)!r}: no such folder")
    tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, REGISTRY_STORE_DIR) if cfg.tracking.enabled else None
    models = {ref.name: resolve_model(ref.source, tracking_uri, out / "models") for ref in cfg.models}
    publish_now(out / "models")  # registry downloads: scoring actors on any node read them from the store
    result = {"task": cfg.task, "conf_threshold": cfg.conf_threshold, "iou_threshold": cfg.iou_threshold,
              "description": f"held-out data of {cfg.world}; frames at conf >= {cfg.conf_threshold}, IoU >= {cfg.iou_threshold}"}
    frames_table, dets = None, None
    if cfg.task == "detect":
        result["models"], frames_table, dets = _detect(cfg, models, tracking_uri)
    else:
        result["models"] = _segment(cfg, models)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["report"] = str(write_report(result, out, frames_table, dets, cfg.gallery))
    rows = {n: headline(m) for n, m in result["models"].items()}
    if tracking_uri:
        metrics = {f"{n}.{k}": v for n, row in rows.items() for k, v in row.items() if v is not None}
        result.update(log_job_run(cfg.tracking.model_copy(update={"tracking_uri": tracking_uri}), out, "evaluate",
                                  config_hash(cfg), cfg, metrics,
                                  [out / "report.html", out / "report.json", *sorted(out.glob("*.png"))]))
    atomic_write_json(out / "summary.json", {k: v for k, v in result.items() if k != "models"} | {"models": rows})
    return result


HEADLINE_METRICS = ("frame_precision", "frame_recall", "f1", "mcc", "fp_rate", "object_recall", "map50", "map50_95",
                    "ece", "ece_calibrated", "event_recall", "false_alarms_per_video", "false_alarms_per_hour",
                    "pixel_precision", "pixel_recall", "pixel_f1")


def headline(m: dict) -> dict:
    """The figures a summary table shows for one model (named in HEADLINE_METRICS)."""
    row = {}
    if m.get("frames"):
        fr, ob = m["frames"]["frames"], m["frames"]["objects"]
        row.update(frame_precision=fr["precision"], frame_recall=fr["recall"], f1=fr["f1"], mcc=fr["mcc"],
                   fp_rate=fr["fp_rate"], object_recall=ob["recall"], map50=ob["map50"], map50_95=ob["map50_95"],
                   ece=m["frames"]["calibration"].get("ece_before"), ece_calibrated=m["frames"]["calibration"].get("ece_after"))
    if m.get("events"):
        ev = m["events"]
        row.update(event_recall=ev["event_recall"], false_alarms_per_video=ev["false_alarms_per_video"],
                   false_alarms_per_hour=ev["false_alarms_per_hour"])
    if m.get("segmentation"):
        px = m["segmentation"]["pixels"]
        row.update(pixel_precision=px["precision"], pixel_recall=px["recall"], pixel_f1=px["f1"], fp_rate=px["fp_rate"])
    return row
