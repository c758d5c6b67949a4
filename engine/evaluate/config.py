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
