"""open_clip image/text encoders built offline: a registered architecture or a config file."""

from __future__ import annotations

import logging
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from engine.config import Section
from engine.models import ModelError, not_plain_weights, resolve_device, seeded_init
from engine.offline import enable_offline

log = logging.getLogger("quarry.models")

TINY_CLIP_CONFIG = Path(__file__).parent / "archs" / "quarry-tiny-clip.json"
# The shipped tiny CLIP sees whole 16:9 dashcam frames squashed to a square: a centre crop
# would cut off the road's edges, where work-zone objects stand.
TINY_CLIP_RESIZE = "squash"


class ClipSpec(Section):
    """Which CLIP model to load. Random weights unless a checkpoint or pretrained tag is given."""

    arch: str = Field("quarry-tiny-clip", description="open_clip architecture name (e.g. ViT-B-32) or quarry-tiny-clip")
    config_file: Path | None = Field(None, description="open_clip model config JSON for a custom architecture")
    checkpoint: Path | None = Field(None, description="local checkpoint file to load")
    pretrained: str | None = Field(None, description="open_clip pretrained tag; needs the hub cache (offline)")
    device: str = Field("auto", description="torch device; auto = cuda when available, else cpu")
    half: bool = Field(False, description="fp16 image encoding (CUDA only; ignored on CPU)")
    resize_mode: Literal["shortest", "longest", "squash"] | None = Field(None, description=(
        "how frames become the model's square input: shortest side + centre crop (open_clip's default), longest "
        "side + pad, or squash; None: the architecture's own (quarry-tiny-clip: squash, others: shortest)"))


@dataclass
class ClipModel:
    """A CLIP model with its image preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    arch: str


def check_clip_source(spec: ClipSpec, key: str) -> None:
    """Before any work: fail when the checkpoint named at `key` (a config key) is missing, and
    warn when the model would have random weights, whose scores are noise to a job that fuses,
    ranks or compares them."""
    if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
        raise ModelError(f"{key}.checkpoint = '{spec.checkpoint}': CLIP checkpoint not found")
    if spec.checkpoint is None and spec.pretrained is None:
        log.warning("%s: no checkpoint or pretrained tag, so CLIP %s has random weights and its scores are noise; "
                    "set %s.checkpoint (`quarry pretrain` writes runs/base/clip.pt)", key, spec.arch, key)


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


@contextmanager
def _quiet_random_init():
    """open_clip warns "No pretrained weights loaded" on every random-weight build; Quarry
    builds those on purpose (seeded, named in the run's identity), so that line is dropped."""
    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "No pretrained weights loaded" not in record.getMessage()

    drop, root = Drop(), logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def build_clip(spec: ClipSpec) -> ClipModel:
    """Build the model in eval mode on `spec.device`, never touching the network."""
    enable_offline()
    import open_clip

    arch = _register_arch(spec)
    if spec.checkpoint is not None and not Path(spec.checkpoint).is_file():
        raise ModelError(f"CLIP checkpoint not found: {spec.checkpoint}")
    pretrained = str(spec.checkpoint) if spec.checkpoint else spec.pretrained
    resize_mode = spec.resize_mode or (TINY_CLIP_RESIZE if arch == TINY_CLIP_CONFIG.stem else None)
    try:
        with seeded_init(), _quiet_random_init():
            model, _, preprocess = open_clip.create_model_and_transforms(
                arch, pretrained=pretrained, device=resolve_device(spec.device), image_resize_mode=resize_mode)
    except RuntimeError as exc:  # e.g. a pretrained tag not in the offline cache
        raise ModelError(f"cannot build CLIP {arch} with pretrained={pretrained!r}: {exc}") from None
    except pickle.UnpicklingError as exc:  # open_clip loads checkpoints with weights_only=True
        raise not_plain_weights(pretrained, exc) from None
    model.eval()
    return ClipModel(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer(arch), arch=arch)


def clip_pixels(frames_rgb, clip: ClipModel):
    """Batch of RGB uint8 frames (b, H, W, 3) -> normalised float tensor (b, 3, S, S).

    The same resize (the model's `resize_mode`: shortest side + centre crop, longest side +
    pad, or squash) and normalisation as open_clip's preprocess, done with OpenCV on the
    whole batch instead of PIL image by image.
    """
    import cv2
    import numpy as np
    import torch

    cfg = getattr(clip.model.visual, "preprocess_cfg", {}) or {}
    size = clip.model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = np.array(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)), np.float32)
    std = np.array(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)), np.float32)
    mode = cfg.get("resize_mode", "shortest")
    fill = np.asarray(cfg.get("fill_color", 0), np.float32)
    out = np.empty((len(frames_rgb), size, size, 3), np.float32)
    for i, frame in enumerate(frames_rgb):
        h, w = frame.shape[:2]
        if mode == "squash":
            out[i] = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
        elif mode == "longest":
            scale = size / max(h, w)
            nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
            out[i] = fill
            top, left = (size - nh) // 2, (size - nw) // 2
            out[i, top : top + nh, left : left + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        else:
            scale = size / min(h, w)
            resized = cv2.resize(frame, (max(size, round(w * scale)), max(size, round(h * scale))), interpolation=cv2.INTER_AREA)
            top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
            out[i] = resized[top : top + size, left : left + size]
    out = (out / 255.0 - mean) / std
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def encode_texts(clip: ClipModel, prompts: list[str]):
    """L2-normalised text embeddings (p, d) as float32 numpy."""
    import torch

    device = next(clip.model.parameters()).device
    with torch.no_grad():
        text = clip.model.encode_text(clip.tokenizer(prompts).to(device))
    return torch.nn.functional.normalize(text.float(), dim=-1).cpu().numpy()


def encode_images(clip: ClipModel, frames_rgb, half: bool = False):
    """L2-normalised image embeddings (b, d) of RGB uint8 frames, as float32 numpy."""
    import torch

    device = next(clip.model.parameters()).device
    pixels = clip_pixels(frames_rgb, clip).to(device)
    with torch.no_grad():
        emb = clip.model.encode_image(pixels.half() if half else pixels)
    return torch.nn.functional.normalize(emb.float(), dim=-1).cpu().numpy()


def logit_scale(clip: ClipModel) -> float:
    """The model's learned softmax temperature (exp of its logit_scale parameter)."""
    return float(clip.model.logit_scale.exp().item())
