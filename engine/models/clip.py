"""open_clip image/text encoders built offline: a registered architecture or a config file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from engine.config import Section
from engine.models import ModelError, resolve_device, seeded_init
from engine.offline import enable_offline

TINY_CLIP_CONFIG = Path(__file__).parent / "archs" / "quarry-tiny-clip.json"


class ClipSpec(Section):
    """Which CLIP model to load. Random weights unless a checkpoint or pretrained tag is given."""

    arch: str = Field("quarry-tiny-clip", description="open_clip architecture name (e.g. ViT-B-32) or quarry-tiny-clip")
    config_file: Path | None = Field(None, description="open_clip model config JSON for a custom architecture")
    checkpoint: Path | None = Field(None, description="local checkpoint file to load")
    pretrained: str | None = Field(None, description="open_clip pretrained tag; needs the hub cache (offline)")
    device: str = Field("auto", description="torch device; auto = cuda when available, else cpu")
    half: bool = Field(False, description="fp16 image encoding (CUDA only; ignored on CPU)")


@dataclass
class ClipModel:
    """A CLIP model with its image preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    arch: str


def _register_arch(spec: ClipSpec) -> str:
    import open_clip

    config = spec.config_file
    if config is None and spec.arch == TINY_CLIP_CONFIG.stem:
        config = TINY_CLIP_CONFIG
    if config is not None:
        if not Path(config).is_file():
            raise ModelError(f"CLIP config file not found: {config}")
        open_clip.add_model_config(config)
        return Path(config).stem
    if spec.arch not in open_clip.list_models():
        raise ModelError(
            f"unknown CLIP architecture {spec.arch!r}; give config_file for a custom one "
            f"(known: quarry-tiny-clip, {', '.join(open_clip.list_models()[:6])}, ...)"
        )
    return spec.arch


def build_clip(spec: ClipSpec) -> ClipModel:
    """Build the model in eval mode on `spec.device`, never touching the network."""
    enable_offline()
    import open_clip

    arch = _register_arch(spec)
    if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
        raise ModelError(f"CLIP checkpoint not found: {spec.checkpoint}")
    pretrained = str(spec.checkpoint) if spec.checkpoint else spec.pretrained
    try:
        with seeded_init():
            model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=resolve_device(spec.device))
    except RuntimeError as exc:  # e.g. a pretrained tag not in the offline cache
        raise ModelError(f"cannot build CLIP {arch} with pretrained={pretrained!r}: {exc}") from None
    model.eval()
    return ClipModel(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer(arch), arch=arch)


def clip_pixels(frames_rgb, clip: ClipModel):
    """Batch of RGB uint8 frames (b, H, W, 3) -> normalised float tensor (b, 3, S, S).

    The same resize-shortest-side + centre-crop + normalise as open_clip's preprocess, done
    with OpenCV on the whole batch instead of PIL image by image.
    """
    import cv2
    import numpy as np
    import torch

    cfg = getattr(clip.model.visual, "preprocess_cfg", {}) or {}
    size = clip.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = np.array(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
    std = np.array(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)
    out = np.empty((len(frames_rgb), size, size, 3), np.float32)
    for i, frame in enumerate(frames_rgb):
        h, w = frame.shape[:2]
        scale = size / min(h, w)
        resized = cv2.resize(frame, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
        top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
        out[i] = resized[top : top + size, left : left + size]
    out = (out / 255.0 - mean) / std
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
