"""Config of the labelling job (`quarry label`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from engine.config import Section
from engine.labels.rules import FpRule, LabelRules
from engine.mining.inputs import VideoLabel
from engine.models.detector import DetectorSpec
from engine.raycluster import ActorPoolConfig, RayConfig
from engine.tracking import TrackingConfig
from engine.video.chunks import DecodeConfig

# The lower middle of a dashcam frame: the lane ahead, where an alarm's object would be.
DEFAULT_ZONE = [(0.3, 0.45), (0.7, 0.45), (1.0, 1.0), (0.0, 1.0)]


class LabelInputConfig(Section):
    """Which frames to label."""

    kind: Literal["videos", "candidates", "images"] = Field("videos", description=(
        "videos: a video set at decode.stride (folder, glob, prefix or manifest, as in mining); candidates: a "
        "mining candidates manifest (its snapshot JPEGs); images: a folder of images"))
    source: str = Field("runs/world/videos.parquet", description="what `kind` names")
    extensions: list[str] = Field([".mp4", ".mov", ".mkv", ".avi", ".webm"], description="video suffixes (videos)")
    image_extensions: list[str] = Field([".jpg", ".jpeg", ".png", ".bmp", ".webp"], description="image suffixes (images)")
    video_label: VideoLabel = Field("unknown", description=(
        "label of images from a folder (videos and candidates carry their own)"))
    limit: int | None = Field(None, ge=1, description="label only the first N sources")


class FpRuleConfig(Section):
    """One false-alarm rule (see engine/labels/rules.py); conditions left empty always hold."""

    name: str = Field(..., min_length=1, description="the reason dropped boxes get")
    kind: Literal["match", "largest_in_zone", "background"] = "match"
    zone: list[tuple[float, float]] | None = Field(None, description="polygon in normalised (x, y), at least 3 points")
    anchor: Literal["bottom_center", "center"] = Field("bottom_center", description="the point of a box tested against the zone")
    min_area_frac: float | None = Field(None, ge=0.0, le=1.0, description="box area / frame area at least this")
    min_height_frac: float | None = Field(None, ge=0.0, le=1.0, description="box height / frame height at least this")
    min_conf: float | None = Field(None, ge=0.0, le=1.0, description="box confidence at least this")

    @field_validator("zone")
    @classmethod
    def _polygon(cls, zone):
        if zone is not None:
            if len(zone) < 3:
                raise ValueError("a zone polygon needs at least 3 points")
            if any(not (0.0 <= v <= 1.0) for point in zone for v in point):
                raise ValueError("zone points are normalised: every coordinate in [0, 1]")
        return zone


class RulesConfig(Section):
    """Which pseudo-labels are kept (seed 001 for false alarms, seed 004's bound and weight)."""

    # a typo (`[fp, clen]`) would keep the false alarms of clean videos as objects to learn
    fp_labels: list[VideoLabel] = Field(["fp", "clean"], description=(
        "video labels whose alarms were false"))
    fp_rules: list[FpRuleConfig] = Field(
        [FpRuleConfig(name="alarm_in_zone", zone=DEFAULT_ZONE, min_conf=0.25),
         FpRuleConfig(name="confident_elsewhere", min_conf=0.5)],
        description="applied in order to boxes of false-alarm videos; the first that matches drops a box")
    keep_conf: float = Field(0.9, ge=0.0, le=1.0, description="every box still standing is kept at or above this")
    pseudo_loss_weight: float = Field(0.5, ge=0.0, le=10.0, description="loss weight of frames with pseudo-labels")

    def to_rules(self) -> LabelRules:
        return LabelRules(
            fp_labels=tuple(self.fp_labels), keep_conf=self.keep_conf, pseudo_loss_weight=self.pseudo_loss_weight,
            fp_rules=tuple(FpRule(name=r.name, kind=r.kind, zone=tuple(map(tuple, r.zone)) if r.zone else None,
                                  anchor=r.anchor, min_area_frac=r.min_area_frac, min_height_frac=r.min_height_frac,
                                  min_conf=r.min_conf) for r in self.fp_rules))


class LabelOutputConfig(Section):
    out_dir: Path = Field(Path("runs/label"), description="frames/, labels/, labels.parquet, boxes.parquet, errors.parquet")
    jpeg_quality: int = Field(95, ge=1, le=100, description="quality of frames written from videos")


class LabelConfig(Section):
    """`quarry label`: pseudo-label frames with the current detector, drop false-alarm boxes by rule."""

    input: LabelInputConfig = LabelInputConfig()
    decode: DecodeConfig = DecodeConfig(stride=5)
    detector: DetectorSpec = DetectorSpec(source="runs/base/base.pt", conf_threshold=0.1)
    rules: RulesConfig = RulesConfig()
    images_per_task: int = Field(32, ge=1, le=4096, description="images per Ray task (images and candidates)")
    pool: ActorPoolConfig = ActorPoolConfig()
    ground_truth: Path | None = Field(None, description=(
        "a synthetic world folder: also report the rules against its ground truth"))
    output: LabelOutputConfig = LabelOutputConfig()
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-label")
    ray: RayConfig = RayConfig()
