"""Train the demo's stand-ins for what a user brings, offline: the base detector on the world's
clean YOLO dataset with Ultralytics' own trainer (scored on held-out frames: precision and
recall and mAP on work-zone frames, false-alarm rate on lookalike frames), a tiny CLIP trained
contrastively on captioned world frames (scored by the ROC AUC of its work-zone probability
and its zero-shot accuracy on the lookalike kind, against the same CLIP with random weights),
and a base segmentation model (scored on the held-out forged and authentic images). The run
is logged to MLflow.

    quarry pretrain --config configs/pretrain.yaml world_dir=runs/world out_dir=runs/base
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import Field, model_validator

from engine.config import Section, write_resolved_config
from engine.evaluate.config import HeldoutEvalConfig
from engine.evaluate.heldout import evaluate_heldout
from engine.models.clip import ClipSpec, build_clip
from engine.models.detector import DetectorSpec, build_detector
from engine.segment.base import BaseSegmenterConfig, train_base_segmenter
from engine.storage import atomic_write_json
from engine.tracking import TrackingConfig, log_job_run
from engine.train.base_detector import BaseTrainingConfig, train_base_detector
from engine.train.clip_pretrain import ClipTrainingConfig, evaluate_clip, train_clip


class PretrainConfig(Section):
    """`quarry pretrain`: train and score the base detector, the tiny CLIP and the base segmenter
    (each can be switched off with its `enabled`)."""

    world_dir: Path = Field(Path("runs/world"), description="a world made by `quarry synth`")
    out_dir: Path = Field(Path("runs/base"), description="where base.pt and metrics.json go")
    training: BaseTrainingConfig = BaseTrainingConfig()
    evaluation: HeldoutEvalConfig = HeldoutEvalConfig()
    clip: ClipTrainingConfig = ClipTrainingConfig()
    segmenter: BaseSegmenterConfig = BaseSegmenterConfig()
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-pretrain")

    @model_validator(mode="after")
    def _something_to_train(self):
        if not (self.training.enabled or self.clip.enabled or self.segmenter.enabled):
            raise ValueError("training.enabled, clip.enabled and segmenter.enabled are all false: nothing to train")
        return self


CONFIG = PretrainConfig
SUMMARY = "train the base detector, a tiny CLIP and a base segmenter; score them on held-out data"


def score_base_model(weights: Path, heldout_dir: Path, evaluation: HeldoutEvalConfig) -> dict:
    spec = DetectorSpec(source=str(weights), imgsz=evaluation.imgsz, conf_threshold=evaluation.conf_threshold,
                        device=evaluation.device)
    return evaluate_heldout(build_detector(spec.source), heldout_dir, spec, evaluation.iou_threshold)


def pretrain_clip(config: PretrainConfig) -> dict:
    """Train the tiny CLIP; score it and the same architecture with random weights."""
    out = config.out_dir / "clip.pt"
    training = train_clip(config.world_dir / "captions", out, config.clip)
    heldout = config.world_dir / "heldout"
    return {**training, "random": evaluate_clip(build_clip(ClipSpec(arch=config.clip.arch)), heldout),
            "trained": evaluate_clip(build_clip(ClipSpec(arch=config.clip.arch, checkpoint=out)), heldout)}


def run(config: PretrainConfig) -> dict:
    write_resolved_config(config, config.out_dir)
    summary: dict = {}
    if config.training.enabled:
        weights = train_base_detector(config.world_dir / "detection" / "data.yaml", config.out_dir, config.training)
        metrics = score_base_model(weights, config.world_dir / "heldout", config.evaluation)
        atomic_write_json(config.out_dir / "metrics.json", metrics)
        summary.update(weights=str(weights), heldout=metrics)
    if config.clip.enabled:
        summary["clip"] = pretrain_clip(config)
        atomic_write_json(config.out_dir / "clip_metrics.json", summary["clip"])
    if config.segmenter.enabled:
        summary["segmenter"] = train_base_segmenter(config.world_dir, config.out_dir / "base_seg.pt", config.segmenter)
        atomic_write_json(config.out_dir / "segmenter_metrics.json", summary["segmenter"])
    if config.tracking.enabled:
        out = Path(config.out_dir)
        flat = {f"detector_{part}_{k}": v for part in ("workzone", "lookalike")
                for k, v in summary["heldout"][part].items()} if "heldout" in summary else {}
        if "clip" in summary:
            flat.update({f"clip_{k}": summary["clip"]["trained"][k] for k in ("workzone_auc", "lookalike_kind_accuracy")})
        if "segmenter" in summary:
            flat.update({f"segmenter_{k}": v for k, v in summary["segmenter"]["heldout"].items()})
        summary.update(log_job_run(config.tracking, out, "pretrain", "", config, flat,
                                   [out / n for n in ("metrics.json", "clip_metrics.json", "segmenter_metrics.json",
                                                      "config.resolved.yaml")]))
    return summary


def main(argv: list[str] | None = None) -> int:
    from jobs.cli import run_job

    return run_job(sys.modules[__name__], argv)


if __name__ == "__main__":
    sys.exit(main())
