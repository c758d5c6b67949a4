"""Config of the demo (`quarry demo`): each step's own config, with the paths the demo wires."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from engine.build.config import BuildConfig
from engine.config import Section
from engine.evaluate.config import HeldoutEvalConfig
from engine.evaluate.run import EvaluateConfig
from engine.labels.config import LabelConfig
from engine.mining.config import GateConfig, MineConfig, SelectionConfig
from engine.registry.promote import GateConfig as PromotionGate
from engine.review.config import DEFAULT_CATEGORIES
from engine.segment.base import BaseSegmenterConfig
from engine.segment.scan import ScanConfig
from engine.synth.config import (
    CaptionSetConfig,
    DetectionSetConfig,
    HeldoutVideoConfig,
    SegmentationSetConfig,
    VideoSetConfig,
)
from engine.train.base_detector import BaseTrainingConfig
from engine.train.clip_pretrain import ClipTrainingConfig
from engine.train.config import DetectTrainConfig, ScalingSection, SegmentTrainConfig, SegmentVariant, TrainConfig
from engine.tune.config import TuneConfig
from engine.tune.objective import ObjectiveConfig
from engine.video.chunks import DecodeConfig

# The world's lookalike kinds and the review category each belongs to (for the report's
# categorisation accuracy; seed 000's `random_cones` has no lookalike kind in the world).
CATEGORY_OF_KIND = {"orange_truck": "orange_trucks", "orange_sign": "roadside_signs", "glare": "weather_artifacts",
                    "orange_person": "other_roadwork_lookalikes"}


# The sections whose `seed` the demo sets from its own (every training it runs).
SEEDED_SECTIONS = ("base_model", "clip", "segmenter", "segment_train", "train.detect", "tune", "tune.train.detect")


# `quarry demo profile=quick`: a first look at the detection loop within 5 minutes on 2 CPU
# cores: a smaller world, shorter schedules, two short trials; no CLIP (a few minutes of
# training leave it below chance, so mining scores with the detector alone, review leaves the
# candidates uncategorised and the set is not deduplicated) and no segmentation images. Its
# figures are noisier than the full demo's.
QUICK_PROFILE = [
    "videos.n_workzone=4", "videos.n_lookalike=4", "videos.n_clean=2", "videos.duration_s=4",
    "heldout_videos.n_workzone=4", "heldout_videos.n_lookalike=4", "heldout_videos.n_clean=2",
    "detection.n_train=300", "detection.n_val=48", "detection.n_heldout_workzone=80", "detection.n_heldout_lookalike=80",
    "captions.n_images=0", "clip.enabled=false", "mine.scoring.use_clip=false", "build.dedup=false",
    "base_model.epochs=12", "base_model.lr0=0.01",
    "train.detect.epochs=2", "train.detect.samples_per_epoch=240",
    "tune.num_samples=2", "tune.train.detect.epochs=2", "tune.train.detect.samples_per_epoch=240",
    "segmentation.n_authentic=0", "segmentation.n_forged=0", "segmentation.n_heldout_authentic=0",
    "segmentation.n_heldout_forged=0",
]


class DemoConfig(Section):
    """`quarry demo`: every step on the synthetic world under one work dir."""

    PROFILES: ClassVar[dict[str, list[str]]] = {"full": [], "quick": QUICK_PROFILE}

    profile: Literal["full", "quick"] = Field("full", description=(
        "full: the measured demo (task=detect: ~12-13 min on 2 cores); quick: a smaller world and shorter schedules "
        "(< 5 min)"))
    task: Literal["detect", "segment", "all"] = Field("detect", description=(
        "detect: the detection loop (synth, base detector and CLIP, mining, label, review, build, fine-tune, tune, "
        "evaluate, promote); segment: the segmentation branch (synth, base segmenter, scan, build, fine-tune with seed "
        "003's loss, held-out scores); all: both. The three share a work dir's world and reuse each other's steps"))
    work_dir: Path = Field(Path("runs/demo"), description="all outputs go under this folder")
    seed: int = Field(0, ge=0, description=(
        "seed of the world and of every training: base detector, CLIP, base segmenter, fine-tuning, the tune search "
        "and its trials, segmentation fine-tuning (the demo sets each section's seed to it)"))
    rounds: int = Field(1, ge=1, le=5, description=(
        "rounds of the loop: each after the first mines fresh videos with the promoted model and fine-tunes it again"))
    reuse: bool = Field(True, description="reuse a step's outputs when its config and inputs are unchanged")
    videos: VideoSetConfig = VideoSetConfig()
    heldout_videos: HeldoutVideoConfig = HeldoutVideoConfig()
    detection: DetectionSetConfig = DetectionSetConfig()
    segmentation: SegmentationSetConfig = SegmentationSetConfig()
    captions: CaptionSetConfig = CaptionSetConfig()
    base_model: BaseTrainingConfig = BaseTrainingConfig()
    clip: ClipTrainingConfig = ClipTrainingConfig()
    evaluation: HeldoutEvalConfig = HeldoutEvalConfig()
    mine: MineConfig = Field(
        MineConfig(gate=GateConfig(min_cue_kinds=1), selection=SelectionConfig(mode="false-alarms", quota_per_video=20, min_gap_frames=2)),
        description="the false-alarm mining step; the demo sets input.source, output.out_dir and the models",
    )
    edges: SelectionConfig = Field(SelectionConfig(mode="edge-cases", quota_per_video=20, min_gap_frames=2),
                                   description="selection of the edge-case mining step over the tp videos (the rest as `mine`)")
    label_edges: bool = Field(True, description=(
        "the world's ground truth answers for the labeller of the edge cases, which join the build as `edge_case` "
        "samples; false: they are mined and scored only"))
    flicker: SelectionConfig = Field(SelectionConfig(mode="flicker", quota_per_video=20, min_gap_frames=2),
                                     description="selection of the flicker mining step (the rest as `mine`)")
    label: LabelConfig = Field(LabelConfig(decode=DecodeConfig(stride=5)),
                               description="the labelling step; the demo sets the input, detector and output")
    categories: dict[str, str] = Field(DEFAULT_CATEGORIES, description="review categories and their CLIP prompts")
    build: BuildConfig = Field(BuildConfig(), description="the dataset step; the demo sets its inputs and output")
    train: TrainConfig = Field(TrainConfig(detect=DetectTrainConfig(epochs=6, samples_per_epoch=480)), description=(
        "detection fine-tuning on Ray Train (2 workers); the demo sets data, model and output"))
    tune: TuneConfig = Field(
        TuneConfig(num_samples=3, train=TrainConfig(detect=DetectTrainConfig(epochs=6, samples_per_epoch=480),
                                                    reweight=BuildConfig().weights,
                                                    objective=ObjectiveConfig(), scaling=ScalingSection(cpus_per_worker=0.95))),
        description="a few short trials; the demo sets train.data, train.detect.model, out_dir and tracking")
    evaluate: EvaluateConfig = Field(EvaluateConfig(), description=(
        "base vs fine-tuned vs tuned on held-out frames and videos; the demo sets models, world, mining and paths"))
    promote: PromotionGate = Field(PromotionGate(), description=(
        "the gate the tuned model (challenger) must pass against the base model (champion)"))
    segmenter: BaseSegmenterConfig = Field(BaseSegmenterConfig(), description="the base segmentation model (pretrain)")
    scan: ScanConfig = Field(ScanConfig(min_area_px=32), description=(
        "the segmentation scan; the demo sets input and model (32 px at 128 px images ~ seed 003's 500 px at 512)"))
    segment_train: SegmentTrainConfig = Field(
        SegmentTrainConfig(variants={"unet_ft": SegmentVariant()}, epochs=8, threshold=0.75),
        description="segmentation fine-tuning (seed 003's loss); the demo starts each variant from the base segmenter")

    @model_validator(mode="after")
    def _task_has_what_it_needs(self):
        """`task` alone decides which base models the demo trains; a branch without its world's
        images, or rounds without the detection loop, would run steps that have nothing to do."""
        for key, section in (("base_model", self.base_model), ("segmenter", self.segmenter)):
            if not section.enabled:
                raise ValueError(f"{key}.enabled=false: the demo's `task` (detect, segment or all) decides which base "
                                 "models it trains")
        if self.task != "detect":
            g = self.segmentation
            empty = [f"segmentation.{k}=0" for k in ("n_authentic", "n_forged", "n_heldout_authentic", "n_heldout_forged")
                     if getattr(g, k) == 0]
            if empty:
                raise ValueError(f"task={self.task} needs segmentation images, and {', '.join(empty)}"
                                 + (" (profile=quick makes none: use the full profile)" if self.profile == "quick" else ""))
        if self.task == "segment" and self.rounds > 1:
            raise ValueError(f"rounds={self.rounds}: rounds repeat the detection loop; use task=detect or task=all")
        return self

    @model_validator(mode="after")
    def _one_seed(self):
        """Give every training section the demo's seed, so `seed=1` varies the world and all
        training alike; a section seed set to another value would be silently replaced, so it is
        refused instead."""
        for dotted in SEEDED_SECTIONS:
            section = self
            for part in dotted.split("."):
                section = getattr(section, part)
            if section.seed not in (0, self.seed):
                raise ValueError(f"{dotted}.seed={section.seed}: the demo's `seed` seeds every training; "
                                 f"set seed={section.seed} instead")
            section.seed = self.seed
        return self
