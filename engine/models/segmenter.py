"""segmentation-models-pytorch models built offline (`encoder_weights=None`), optional checkpoint."""

from __future__ import annotations

import pickle
from pathlib import Path

from pydantic import Field

from engine.config import Section
from engine.models import ModelError, not_plain_weights, seeded_init


class SegmenterSpec(Section):
    """Which segmentation model to build."""

    arch: str = Field("Unet", description="smp architecture: Unet, FPN, DeepLabV3Plus, ...")
    encoder: str = Field("resnet18", description="smp encoder name")
    in_channels: int = Field(3, ge=1, le=16)
    classes: int = Field(1, ge=1, description="output channels (1 = binary forgery mask)")
    checkpoint: Path | None = Field(None, description="local state_dict (.pt/.pth) to load")
    device: str = Field("cpu", description="torch device")
    noise_residual: bool | None = Field(None, description=(
        "feed a fixed high-pass noise residual beside the image (engine/models/noise_residual.py); "
        "None: as the checkpoint was saved (without a checkpoint: no)"))


def build_segmenter(spec: SegmenterSpec):
    """Return an smp model with random encoder weights, or loaded from `spec.checkpoint`,
    wrapped in NoiseResidualInput when the spec or the checkpoint says so."""
    import segmentation_models_pytorch as smp
    import torch

    from engine.models.noise_residual import NoiseResidualInput, has_noise_residual

    state = None
    if spec.checkpoint is not None:
        if not Path(spec.checkpoint).is_file():
            raise ModelError(f"segmenter checkpoint not found: {spec.checkpoint}")
        try:
            state = torch.load(spec.checkpoint, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise not_plain_weights(spec.checkpoint, exc) from None
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
    residual = spec.noise_residual if spec.noise_residual is not None else (
        isinstance(state, dict) and has_noise_residual(state))
    try:
        with seeded_init():
            model = smp.create_model(spec.arch, encoder_name=spec.encoder, encoder_weights=None,
                                     in_channels=spec.in_channels * (2 if residual else 1), classes=spec.classes)
    except KeyError as exc:
        raise ModelError(f"unknown smp architecture or encoder ({spec.arch}, {spec.encoder}): {exc}") from None
    if residual:
        model = NoiseResidualInput(model)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{spec.checkpoint} does not fit {spec.arch}/{spec.encoder}"
                             f"{' with a noise residual' if residual else ''}: {exc}") from None
    return model.to(spec.device).eval()
