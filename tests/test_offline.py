"""Offline: building, predicting and training every model family never touches the network."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.models import ModelError
from engine.models.clip import ClipSpec, build_clip, check_clip_source
from engine.models.detector import build_detector
from engine.models.segmenter import SegmenterSpec, build_segmenter
from engine.offline import OFFLINE_ENV, enable_offline

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_build_predict_train_without_network(tiny_world, tmp_path):
    cfg, _ = tiny_world
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and k != "YOLO_CONFIG_DIR"}
    env["QUARRY_CACHE_DIR"] = str(tmp_path / "cache")  # a fresh config dir: no font, no settings yet
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "offline_probe.py"), str(Path(cfg.out_dir) / "detection" / "data.yaml"), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["steps"] == ["detector", "clip", "segmenter"]
    assert result["control_caught"], "the audit hook did not see a real connection attempt"
    assert result["attempts"] == []
    font = tmp_path / "cache" / "ultralytics" / "Ultralytics" / "Arial.ttf"
    assert font.is_file()
    settings = json.loads((font.parent / "settings.json").read_text())
    assert settings["sync"] is False and settings["mlflow"] is False and settings["raytune"] is False


def test_enable_offline_sets_every_switch(monkeypatch, tmp_path):
    for key in list(OFFLINE_ENV) + ["YOLO_CONFIG_DIR"]:
        monkeypatch.delenv(key, raising=False)
    env = enable_offline(cache_dir=tmp_path)
    for key, value in OFFLINE_ENV.items():
        assert os.environ[key] == value
    assert env["YOLO_CONFIG_DIR"] == str(tmp_path / "ultralytics")
    assert (tmp_path / "ultralytics" / "Ultralytics" / "Arial.ttf").stat().st_size > 100_000


def test_user_yolo_config_dir_is_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "mine"))
    assert enable_offline(cache_dir=tmp_path)["YOLO_CONFIG_DIR"] == str(tmp_path / "mine")


def test_detector_names_never_download(tmp_path):
    with pytest.raises(ModelError, match="never downloads"):
        build_detector("yolov8n.pt")
    with pytest.raises(ModelError, match="architecture not found"):
        build_detector("yolov8q.yaml")
    with pytest.raises(ModelError, match="expected an architecture"):
        build_detector("model.onnx")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot load detector weights"):
        build_detector(str(bad))


def test_tiny_detector_has_requested_classes():
    model = build_detector("quarry-yolo-tiny.yaml", ["a", "b"])
    assert model.names == {0: "a", 1: "b"}
    n_params = sum(p.numel() for p in model.model.parameters())
    assert n_params < 1_500_000


@pytest.mark.reliability("bad config")
def test_clip_and_segmenter_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown CLIP architecture"):
        build_clip(ClipSpec(arch="no-such-clip"))
    with pytest.raises(ModelError, match="checkpoint not found"):
        build_clip(ClipSpec(checkpoint=tmp_path / "missing.pt"))
    with pytest.raises(ModelError, match="unknown smp"):
        build_segmenter(SegmenterSpec(arch="NoSuchNet"))
    with pytest.raises(ModelError, match="checkpoint not found"):
        build_segmenter(SegmenterSpec(checkpoint=tmp_path / "missing.pth"))


@pytest.mark.reliability("bad config")
def test_a_clip_checkpoint_is_checked_by_its_key_and_random_weights_are_named(tmp_path, caplog):
    """The check jobs run before any work: a missing checkpoint is an error naming the config key;
    a CLIP without a checkpoint or pretrained tag (random weights, noise to fuse or compare) is a
    warning; a checkpoint that exists passes quietly."""
    with pytest.raises(ModelError, match=r"^scoring.clip.checkpoint = '.*missing.pt': CLIP checkpoint not found$"):
        check_clip_source(ClipSpec(checkpoint=tmp_path / "missing.pt"), "scoring.clip")
    with caplog.at_level("WARNING", logger="quarry.models"):
        check_clip_source(ClipSpec(), "categorise.clip")
    assert "categorise.clip: no checkpoint or pretrained tag, so CLIP quarry-tiny-clip has random weights" in caplog.text
    caplog.clear()
    (tmp_path / "clip.pt").write_bytes(b"checked for existence here; loaded by build_clip")
    with caplog.at_level("WARNING", logger="quarry.models"):
        check_clip_source(ClipSpec(checkpoint=tmp_path / "clip.pt"), "clip")
    assert caplog.text == ""


def test_segmenter_checkpoint_round_trip(tmp_path):
    import torch

    spec = SegmenterSpec(encoder="resnet18")
    model = build_segmenter(spec)
    torch.save(model.state_dict(), tmp_path / "seg.pth")
    again = build_segmenter(spec.model_copy(update={"checkpoint": tmp_path / "seg.pth"}))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), again(x))


def test_a_noise_residual_segmenter_sees_the_high_pass_and_its_checkpoint_says_so(tmp_path):
    import cv2
    import numpy as np
    import torch

    spec = SegmenterSpec(encoder="resnet18", noise_residual=True)
    model = build_segmenter(spec)
    x = torch.rand(1, 3, 64, 64)
    # the residual, computed independently: OpenCV's 3x3 box mean with mirrored borders
    image = x[0].numpy().transpose(1, 2, 0)
    residual = image - cv2.blur(image, (3, 3), borderType=cv2.BORDER_REFLECT_101)
    six = torch.from_numpy(np.concatenate([image, 5.0 * residual], axis=2).transpose(2, 0, 1))[None]
    with torch.no_grad():
        assert torch.allclose(model(x), model.net(six), atol=1e-5)
    torch.save(model.state_dict(), tmp_path / "seg.pth")
    again = build_segmenter(SegmenterSpec(encoder="resnet18", checkpoint=tmp_path / "seg.pth"))  # from the checkpoint
    with torch.no_grad():
        assert torch.allclose(model(x), again(x))
    with pytest.raises(ModelError, match=r"seg.pth does not fit Unet/resnet18: "):
        build_segmenter(SegmenterSpec(encoder="resnet18", checkpoint=tmp_path / "seg.pth", noise_residual=False))


class _NotWeights:
    """A pickled object in a checkpoint: loading it would run code."""


@pytest.mark.reliability("security")
def test_checkpoints_holding_more_than_weights_are_refused_by_name(tmp_path):
    import torch

    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": _NotWeights()}, evil)
    with pytest.raises(ModelError, match=r"evil.pt: refused: it holds more than weights"):
        build_segmenter(SegmenterSpec(checkpoint=evil))
    with pytest.raises(ModelError, match=r"evil.pt: refused: it holds more than weights"):
        build_clip(ClipSpec(checkpoint=evil))


@pytest.mark.slow
def test_the_workers_of_a_local_ray_get_every_switch():
    """A local Ray's workers inherit the driver's environment (no runtime env is set for it):
    started from a process without the switches, a Ray task still sees each one, and the local
    Ray Train settings, where the user set none of their own."""
    from engine.raycluster import LOCAL_TRAIN_ENV

    code = ("import json, os, ray\n"
            "from engine.raycluster import LOCAL_TRAIN_ENV, RayConfig, ray_session\n"
            "from engine.offline import OFFLINE_ENV\n"
            "keys = [*OFFLINE_ENV, *LOCAL_TRAIN_ENV]\n"
            "with ray_session(RayConfig(num_cpus=1)):\n"
            "    seen = ray.get(ray.remote(lambda: {k: os.environ.get(k) for k in keys}).remote())\n"
            "print(json.dumps(seen))\n")
    env = {k: v for k, v in os.environ.items() if k not in OFFLINE_ENV and k not in LOCAL_TRAIN_ENV}
    env["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "3"  # the user's own
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {**OFFLINE_ENV, **LOCAL_TRAIN_ENV, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "3"}
