"""Config of the mining job (`quarry mine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from engine.config import Section
from engine.models.clip import ClipSpec
from engine.models.detector import DetectorSpec
from engine.raycluster import RayConfig
from engine.tracking import TrackingConfig
from engine.video.chunks import DecodeConfig

DEFAULT_WORKZONE_PROMPTS = [
    "a road work zone with traffic cones",
    "orange construction barrels along a closed lane",
    "a road work ahead warning sign",
    "striped construction barriers on a road",
]
DEFAULT_LOOKALIKE_PROMPTS = [
    "an orange truck driving on the road",
    "an orange billboard beside the road",
    "a person wearing an orange vest",
    "sun glare in a dashcam image",
    "an empty road with no construction",
]


class InputConfig(Section):
    """What to mine."""

    source: str = Field("runs/world/videos.parquet", description=(
        "a folder, a glob, an object-store prefix (s3://, gs://, any fsspec URL), a single video, or a "
        "manifest (.csv/.parquet) with video_uri, optional video_label (tp/fp/clean/unknown) and metadata columns"))
    extensions: list[str] = Field([".mp4", ".mov", ".mkv", ".avi", ".webm"], description="video file suffixes to list")
    limit: int | None = Field(None, ge=1, description="mine only the first N inputs (sorted), for a trial run")


class ScoringConfig(Section):
    """The models and how their outputs are fused; the actor pool that runs them."""

    detector: DetectorSpec = DetectorSpec(source="runs/base/base.pt")
    cue_classes: list[str] | None = Field(None, description="detector classes that count as cues (None: all)")
    cue_conf: float = Field(0.3, ge=0.0, le=1.0, description="a detection counts as a cue at or above this confidence")
    clip: ClipSpec = ClipSpec()
    use_clip: bool = Field(True, description="score frames with CLIP (off: fused score = YOLO score)")
    workzone_prompts: list[str] = Field(DEFAULT_WORKZONE_PROMPTS, min_length=1)
    lookalike_prompts: list[str] = Field(DEFAULT_LOOKALIKE_PROMPTS, min_length=1)
    w_yolo: float = Field(0.6, ge=0.0, description="weight of the YOLO score in the fused score")
    w_clip: float = Field(0.4, ge=0.0, description="weight of CLIP's work-zone probability in the fused score")
    min_actors: int = Field(1, ge=1, description="scoring actors the pool keeps")
    max_actors: int = Field(2, ge=1, description="scoring actors the pool may grow to")
    num_gpus_per_actor: float = Field(0.0, ge=0.0, le=8.0, description="GPUs per actor; fractions share a GPU")
    num_cpus_per_actor: float = Field(1.0, gt=0.0, le=64.0)

    @model_validator(mode="after")
    def _check(self):
        if self.min_actors > self.max_actors:
            raise ValueError(f"scoring.min_actors ({self.min_actors}) > scoring.max_actors ({self.max_actors})")
        if self.w_yolo + self.w_clip <= 0:
            raise ValueError("scoring.w_yolo and scoring.w_clip must not both be 0")
        return self


class GateConfig(Section):
    """The temporal multi-cue gate (rows = sampled frames)."""

    min_cue_kinds: int = Field(2, ge=1, description="K: cue kinds that must persist at once")
    min_frames: int = Field(3, ge=1, description="N: sampled frames a kind must appear in within the window")
    window_frames: int = Field(5, ge=1, description="W: sampled frames in the window")
    persistence_weight: float = Field(0.6, ge=0.0, le=1.0, description="share of persistence in the gate confidence")

    @model_validator(mode="after")
    def _check(self):
        if self.min_frames > self.window_frames:
            raise ValueError(f"gate.min_frames ({self.min_frames}) > gate.window_frames ({self.window_frames})")
        return self


class SelectionConfig(Section):
    """Which gated frames become candidates."""

    mode: Literal["edge-cases", "false-alarms", "flicker"] = Field("edge-cases", description=(
        "edge-cases: gated frames in a fused-score band (seed 000); false-alarms: fp/clean videos where the "
        "model fires and the gate would alarm (seed 001); flicker: detections without temporal support"))
    band_low: float = Field(0.45, ge=0.0, le=1.0, description="edge-cases: lowest fused score kept")
    band_high: float = Field(0.85, ge=0.0, le=1.0, description="edge-cases: highest fused score kept")
    fire_threshold: float = Field(0.25, ge=0.0, le=1.0, description="false-alarms: YOLO score at which the model fires")
    require_gate: bool = Field(True, description="false-alarms: the gate must also pass (an alarm would be raised)")
    flicker_window_rows: int = Field(2, ge=1, le=100, description="flicker: sampled frames searched on each side for support")
    flicker_iou: float = Field(0.3, gt=0.0, le=1.0, description="flicker: IoU at which a same-class box supports a detection")
    flicker_conf: float = Field(0.25, ge=0.0, le=1.0, description="flicker: detections below this confidence are not flagged")
    quota_per_video: int = Field(50, ge=1)
    min_gap_frames: int = Field(4, ge=0, description="minimum distance between two candidates, in video frames")

    @model_validator(mode="after")
    def _check(self):
        if self.band_low > self.band_high:
            raise ValueError(f"selection.band_low ({self.band_low}) > selection.band_high ({self.band_high})")
        return self


class OutputConfig(Section):
    out_dir: Path = Field(Path("runs/mine"), description="where candidates, timelines and tables go")
    timeline_csv: bool = Field(False, description="also write each timeline as CSV")
    annotated_mp4: bool = Field(False, description="write an H.264 overlay per video (boxes, state, gate)")
    jpeg_quality: int = Field(90, ge=1, le=100)


class MineConfig(Section):
    """`quarry mine`: stream videos through the detector and CLIP, gate in time, write candidates."""

    input: InputConfig = InputConfig()
    decode: DecodeConfig = DecodeConfig()
    scoring: ScoringConfig = ScoringConfig()
    gate: GateConfig = GateConfig()
    selection: SelectionConfig = SelectionConfig()
    output: OutputConfig = OutputConfig()
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-mine")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _gate_fits_cue_classes(self):
        cues = self.scoring.cue_classes
        if cues is not None and self.gate.min_cue_kinds > len(cues):
            raise ValueError(f"gate.min_cue_kinds ({self.gate.min_cue_kinds}) is more than the {len(cues)} "
                             f"scoring.cue_classes {cues}: the gate could never pass")
        return self
