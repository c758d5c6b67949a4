"""Run in a fresh interpreter by test_offline.py: build, predict and train one step with every
model family while an audit hook refuses (and records) any attempt to leave this machine.

Usage: python tests/offline_probe.py <yolo dataset data.yaml> <work dir>
Prints one JSON line: {"attempts": [...], "control_caught": bool, "steps": [...]}.
"""

from __future__ import annotations

import ipaddress
import json
import sys

ATTEMPTS: list[str] = []


def _is_local(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hook(event: str, args) -> None:
    host = None
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = args[1][0]
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
    elif event == "urllib.Request":
        ATTEMPTS.append(f"{event} {args[0]}")
        raise OSError("network blocked by the offline probe")
    if host is not None and not _is_local(host if isinstance(host, str) else host.decode()):
        ATTEMPTS.append(f"{event} {host}")
        raise OSError(f"network blocked by the offline probe: {host}")


def main(data_yaml: str, work_dir: str) -> None:
    sys.addaudithook(_hook)
    import numpy as np
    import torch

    from engine.models.clip import ClipSpec, build_clip
    from engine.models.detector import DetectorSpec, build_detector, detect
    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from engine.offline import enable_offline

    enable_offline()
    steps = []
    images = [np.random.default_rng(i).integers(0, 255, (96, 128, 3), dtype=np.uint8) for i in range(2)]

    detector = build_detector("yolov8n.yaml", ["cone", "barrel", "sign", "barrier"])
    detect(detector, images, DetectorSpec(imgsz=128))
    # Ultralytics' own trainer, with plots on: the path that downloads Arial.ttf when unprepared
    detector.train(data=data_yaml, epochs=1, imgsz=64, batch=4, workers=0, device="cpu", project=work_dir,
                   name="probe", exist_ok=True, plots=True, verbose=False, amp=False)
    steps.append("detector")

    clip = build_clip(ClipSpec())
    pixels = torch.stack([clip.preprocess(__import__("PIL.Image").Image.fromarray(im)) for im in images])
    tokens = clip.tokenizer(["a traffic cone", "an orange truck"])
    clip.model.train()
    optimizer = torch.optim.AdamW(clip.model.parameters(), lr=1e-4)
    image_features, text_features, scale = clip.model(pixels, tokens)[:3]
    logits = scale * image_features @ text_features.T
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(2))
    loss.backward()
    optimizer.step()
    steps.append("clip")

    segmenter = build_segmenter(SegmenterSpec(encoder="resnet18"))
    segmenter.train()
    x = torch.rand(2, 3, 64, 64)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(segmenter(x), torch.zeros(2, 1, 64, 64))
    loss.backward()
    torch.optim.Adam(segmenter.parameters(), lr=1e-4).step()
    steps.append("segmenter")

    found = list(ATTEMPTS)
    import socket

    try:  # control: the hook must catch a real attempt, or this probe proves nothing
        socket.create_connection(("example.com", 80), timeout=1)
    except OSError:
        pass
    control_caught = len(ATTEMPTS) > len(found)
    print(json.dumps({"attempts": found, "control_caught": control_caught, "steps": steps}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
