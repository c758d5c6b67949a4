"""open_clip image/text encoders built offline: a registered architecture or a config file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from engine.config import Section
from engine.models import ModelError
from engine.offline import enable_offline

TINY_CLIP_CONFIG = Path(__file__).parent / "archs" / "quarry-tiny-clip.json"


class ClipSpec(Section):
    """Which CLIP model to load. Random weights unless a checkpoint or pretrained tag is given."""

    arch: str = Field("quarry-tiny-clip", description="open_clip architecture name (e.g. ViT-B-32) or quarry-tiny-clip")
    config_file: Path | None = Field(None, description="open_clip model config JSON for a custom architecture")
    checkpoint: Path | None = Field(None, description="local checkpoint file to load")
    pretrained: str | None = Field(None, description="open_clip pretrained tag; needs the hub cache (offline)")
    device: str = Field("cpu", description="torch device")


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
        model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=pretrained, device=spec.device)
    except RuntimeError as exc:  # e.g. a pretrained tag not in the offline cache
        raise ModelError(f"cannot build CLIP {arch} with pretrained={pretrained!r}: {exc}") from None
    model.eval()
    return ClipModel(model=model, preprocess=preprocess, tokenizer=open_clip.get_tokenizer(arch), arch=arch)
