"""Config of the synthetic world (`quarry synth`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from engine.config import Section


class VideoSetConfig(Section):
    """Road-scene videos with per-frame ground truth."""

    n_workzone: int = Field(8, ge=0, description="videos driving through a work zone (video_label tp)")
    n_lookalike: int = Field(8, ge=0, description="videos with orange lookalikes and no work zone (video_label fp)")
    n_clean: int = Field(4, ge=0, description="plain road videos (video_label clean)")
    width_px: int = Field(256, ge=64, le=1920, multiple_of=2, description="frame width (even, for yuv420p)")
    height_px: int = Field(144, ge=36, le=1080, multiple_of=2, description="frame height (even, for yuv420p)")
    fps: int = Field(15, ge=1, le=60, description="frames per second")
    duration_s: float = Field(6.0, gt=0.0, le=600.0, description="length of each video in seconds")
    crf: int = Field(23, ge=0, le=51, description="x264 constant rate factor (lower = better quality)")


class HeldoutVideoConfig(Section):
    """Videos from other seeds than every training and mining video, for event-level
    evaluation (same size, frame rate and length as `videos`)."""

    n_workzone: int = Field(10, ge=0)
    n_lookalike: int = Field(10, ge=0)
    n_clean: int = Field(4, ge=0)


class DetectionSetConfig(Section):
    """Still frames in YOLO format. Training frames never contain lookalikes."""

    n_train: int = Field(600, ge=1, description="training images (work-zone frames plus background frames)")
    n_val: int = Field(100, ge=1, description="validation images for the base detector's trainer")
    n_heldout_workzone: int = Field(150, ge=0, description="held-out work-zone frames (for recall/precision)")
    n_heldout_lookalike: int = Field(150, ge=0, description="held-out lookalike frames (for FP rate)")
    background_fraction: float = Field(0.15, ge=0.0, le=1.0, description="share of train/val frames with no cue objects")


class SegmentationSetConfig(Section):
    """Authentic images and copy-move forgeries with masks."""

    n_authentic: int = Field(60, ge=0)
    n_forged: int = Field(60, ge=0)
    size_px: int = Field(128, ge=32, le=2048, description="square image side")
    dark_fraction: float = Field(0.25, ge=0.0, le=1.0, description="share of authentic images with mean brightness < 30")
    artifact_fraction: float = Field(0.4, ge=0.0, le=1.0, description=(
        "share of authentic images with a natural smooth patch (the world's segmentation hard negatives)"))
    n_heldout_authentic: int = Field(60, ge=0, description="held-out authentic images (other seeds), for FP rate")
    n_heldout_forged: int = Field(60, ge=0, description="held-out forgeries (other seeds), for pixel recall")


class CaptionSetConfig(Section):
    """Frames with captions made from their ground truth, for the demo's tiny CLIP."""

    n_images: int = Field(600, ge=0, description="captioned frames: work zones, each lookalike kind, clean road")


class SynthConfig(Section):
    """`quarry synth`: generate the synthetic world."""

    out_dir: Path = Field(Path("runs/world"), description="where the world is written")
    seed: int = Field(0, ge=0, description="master seed; the same seed gives the same world")
    videos: VideoSetConfig = VideoSetConfig()
    heldout_videos: HeldoutVideoConfig = HeldoutVideoConfig()
    detection: DetectionSetConfig = DetectionSetConfig()
    segmentation: SegmentationSetConfig = SegmentationSetConfig()
    captions: CaptionSetConfig = CaptionSetConfig()
