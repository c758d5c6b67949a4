"""Config of held-out detector evaluation."""

from __future__ import annotations

from pydantic import Field

from engine.config import Section


class HeldoutEvalConfig(Section):
    """How detections are counted on the held-out frames."""

    conf_threshold: float = Field(0.25, ge=0.0, le=1.0, description="a box counts as a detection at or above this confidence")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="IoU for a detection to match a ground-truth box")
    imgsz: int = Field(256, ge=32, le=4096, multiple_of=32, description="inference size in pixels")
    device: str = Field("cpu")


class ModelRef(Section):
    """A model to evaluate: a local file or a registry URI (models:/name@alias, models:/name/version)."""

    name: str = Field(..., min_length=1, description="its column in the report")
    source: str = Field(..., min_length=1)
    weight: float = Field(1.0, gt=0.0, description="segmentation ensembles: its weight in the mean probability")
    arch: str = Field("Unet", description="segmentation: smp architecture of a state_dict")
    encoder: str = Field("resnet18", description="segmentation: smp encoder")
