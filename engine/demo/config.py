"""Config of the demo (`quarry demo`): each step's own config, with the paths the demo wires."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

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


class DemoConfig(Section):
    """`quarry demo`: every step on the synthetic world under one work dir."""

    work_dir: Path = Field(Path("runs/demo"), description="all outputs go under this folder")
    seed: int = Field(0, ge=0, description="seed of the world and of training")
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
    flicker: SelectionConfig = Field(SelectionConfig(mode="flicker", quota_per_video=20, min_gap_frames=2),
                                     description="selection of the flicker mining step (the rest as `mine`)")
    label: LabelConfig = Field(LabelConfig(decode=DecodeConfig(stride=5)),
                               description="the labelling step; the demo sets the input, detector and output")
    categories: dict[str, str] = Field(DEFAULT_CATEGORIES, description="review categories and their CLIP prompts")
    build: BuildConfig = Field(BuildConfig(), description="the dataset step; the demo sets its inputs and output")
    train: TrainConfig = Field(TrainConfig(detect=DetectTrainConfig(epochs=3, samples_per_epoch=480)), description=(
        "detection fine-tuning on Ray Train (2 workers); the demo sets data, model and output"))
    tune: TuneConfig = Field(
        TuneConfig(num_samples=2, train=TrainConfig(detect=DetectTrainConfig(epochs=3, samples_per_epoch=480),
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
