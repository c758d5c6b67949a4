"""Shared fixtures. Everything a test writes goes under pytest's tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

# OpenCV must load before decord: decord's bundled zlib otherwise breaks cv2's PNG codec
# ("libpng error: bad parameters to zlib"). engine.video does the same.
import cv2  # noqa: F401
import pytest


@pytest.fixture(autouse=True, scope="session")
def _offline_env(tmp_path_factory):
    """Tests run with the engine's offline switches and a private Ultralytics config dir."""
    os.environ["YOLO_CONFIG_DIR"] = str(tmp_path_factory.mktemp("yolo-config"))
    from engine.offline import enable_offline

    enable_offline()
    yield


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """A small synthetic world shared by tests that only read it."""
    from engine.synth.config import SynthConfig
    from engine.synth.world import generate_world

    cfg = SynthConfig.model_validate({
        "out_dir": str(tmp_path_factory.mktemp("world")),
        "seed": 7,
        "videos": {"n_workzone": 2, "n_lookalike": 4, "n_clean": 1, "duration_s": 2.0, "fps": 10},
        "detection": {"n_train": 12, "n_val": 4, "n_heldout_workzone": 6, "n_heldout_lookalike": 8},
        "segmentation": {"n_authentic": 8, "n_forged": 6, "size_px": 64, "dark_fraction": 0.5},
    })
    summary = generate_world(cfg)
    return cfg, summary


@pytest.fixture(scope="session")
def bad_videos(tiny_world, tmp_path_factory):
    """Broken inputs next to a good one: corrupt bytes, truncation, 0 bytes, text, odd names."""
    import numpy as np

    cfg, _ = tiny_world
    good = (Path(cfg.out_dir) / "videos" / "workzone_0000.mp4").read_bytes()
    folder = tmp_path_factory.mktemp("bad videos")
    corrupt = bytearray(good)
    n = len(corrupt)
    corrupt[n // 4 : n // 2] = np.random.default_rng(0).integers(0, 255, n // 2 - n // 4, dtype=np.uint8).tobytes()
    files = {
        "corrupt": ("corrupt.mp4", bytes(corrupt)),
        "truncated": ("truncated.mp4", good[: n // 2]),
        "empty": ("empty.mp4", b""),
        "text": ("notes.mp4", b"this is a text file, not a video\n"),
        "spaces": ("clip with spaces.mp4", good),
        "unicode": ("vid\u00e9o \u6f22\u5b57.mp4", good),
        "dots": ("..hidden..clip.mp4", good),
    }
    paths = {}
    for name, (filename, data) in files.items():
        paths[name] = folder / filename
        paths[name].write_bytes(data)
    return paths
