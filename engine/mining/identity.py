"""What decides a video's mining outputs: the models' content and the settings.

A completion marker records the run hash it was made under; a rerun redoes every video
whose marker carries another hash. The hash covers the *bytes* of the checkpoints (retrain
`base.pt` in place and every video is mined again), the architecture files of random-weight
models with the library versions that initialise them, and the decode, scoring, gate and
selection settings. Where the work runs (pool sizes, GPUs per actor) and where a checkpoint
lies are left out.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

from engine.config import config_to_dict
from engine.mining.config import MineConfig
from engine.models.clip import TINY_CLIP_CONFIG
from engine.models.detector import resolve_architecture

POOL_KEYS = ("min_actors", "max_actors", "num_gpus_per_actor", "num_cpus_per_actor")  # where, not what


def file_sha256(path) -> str | None:
    """Hex SHA-256 of a local file's bytes, None if there is no such file."""
    if path is None or not Path(path).is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def model_identity(cfg: MineConfig) -> dict[str, str | None]:
    """Content digests of the models mining would build from `cfg` (full SHA-256 hex)."""
    s = cfg.scoring
    source = s.detector.source
    if Path(source).suffix.lower() == ".pt":
        detector = file_sha256(source)
    else:  # random weights from an architecture: its file and the library that builds it
        arch = resolve_architecture(source)
        detector = f"{file_sha256(arch) or source}@ultralytics-{package_version('ultralytics')}"
    clip = None
    if s.use_clip:
        if s.clip.checkpoint is not None:
            clip = file_sha256(s.clip.checkpoint)
        else:
            config = s.clip.config_file or (TINY_CLIP_CONFIG if s.clip.arch == TINY_CLIP_CONFIG.stem else None)
            clip = f"{file_sha256(config) or s.clip.arch}:{s.clip.pretrained}@open_clip-{package_version('open_clip_torch')}"
    return {"detector": detector, "clip": clip}


def run_hash(cfg: MineConfig, models: dict) -> str:
    """Hash of everything that decides a video's outputs: `models` (from `model_identity`)
    and the decode, scoring, gate and selection settings, pool sizing left out."""
    data = config_to_dict(cfg)
    relevant = {k: data[k] for k in ("decode", "scoring", "gate", "selection")}
    relevant["scoring"] = {k: v for k, v in relevant["scoring"].items() if k not in POOL_KEYS}
    # the digests in `models` stand for the files: a copy of the same checkpoint elsewhere (a
    # registry download, a moved run folder) is the same model
    if Path(cfg.scoring.detector.source).suffix.lower() == ".pt":
        relevant["scoring"]["detector"] = {**relevant["scoring"]["detector"], "source": None}
    relevant["scoring"]["clip"] = {**relevant["scoring"]["clip"], "checkpoint": None, "config_file": None}
    relevant["models"] = models
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:12]
