"""Ultralytics detectors built offline: an architecture `.yaml` (random weights) or a local `.pt`."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from pydantic import Field

from engine.config import Section
from engine.models import ModelError, resolve_device, seeded_init
from engine.offline import configure_ultralytics

ARCH_DIR = Path(__file__).parent / "archs"
TINY_YOLO = "quarry-yolo-tiny.yaml"  # shipped with Quarry: YOLOv8 at half of n's width


class DetectorSpec(Section):
    """Which detector to load and how to run it."""

    source: str = Field("yolov8n.yaml", description="Ultralytics architecture (.yaml name or path) or local weights (.pt)")
    imgsz: int = Field(256, ge=32, le=4096, multiple_of=32, description="inference size in pixels (multiple of 32)")
    conf_threshold: float = Field(0.25, ge=0.0, le=1.0, description="minimum box confidence kept")
    iou_threshold: float = Field(0.5, gt=0.0, le=1.0, description="NMS IoU threshold")
    device: str = Field("auto", description="torch device: auto (cuda when available), cpu, cuda, cuda:0 ...")
    half: bool = Field(False, description="fp16 inference (CUDA only; ignored on CPU)")


@dataclass(frozen=True)
class Detections:
    """Boxes for one image: xyxy pixels (n, 4), confidence (n,), class id (n,)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    def __len__(self) -> int:
        return len(self.conf)


def check_detector_source(source: str) -> None:
    """Fail fast, before any cluster work, if `source` cannot be built offline."""
    suffix = Path(source).suffix.lower()
    if suffix == ".pt" and not Path(source).is_file():
        raise ModelError(
            f"detector weights not found: {source} (Quarry never downloads weights; "
            "give a local .pt file or an architecture such as yolov8n.yaml)"
        )
    if suffix not in (".pt", ".yaml", ".yml"):
        raise ModelError(f"detector source {source!r}: expected an architecture .yaml or a weights .pt file")


def resolve_architecture(source: str) -> str:
    """The path Ultralytics builds an architecture `.yaml` from: Quarry's shipped tiny YOLO
    by its name, else `source` as given (a path, or a name in Ultralytics' model zoo)."""
    if source == TINY_YOLO and not Path(source).exists():
        return str(ARCH_DIR / TINY_YOLO)
    return source


def weights_digest(model) -> str:
    """sha256 of a torch module's parameters and buffers (names, dtypes, shapes, values) and its
    class names where it has them (an Ultralytics model does): two checkpoint files that differ
    only in what they record beside the model (training arguments, metrics, dates) give the same
    digest."""
    import hashlib

    import torch

    digest = hashlib.sha256(repr(getattr(model, "names", None)).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def detector_class_names(source: str) -> list[str]:
    """The class names a detector predicts, in class-id order (builds it once, offline)."""
    return [name for _, name in sorted(build_detector(source).names.items())]


def build_detector(source: str, class_names: list[str] | None = None):
    """Return an `ultralytics.YOLO` built without any download.

    - `*.pt`: must be a local file (Ultralytics would otherwise fetch e.g. `yolov8n.pt`).
    - `*.yaml`: an architecture from Ultralytics' model zoo (`yolov8n.yaml`, `yolo11n.yaml`),
      Quarry's `quarry-yolo-tiny.yaml`, or a path; weights are random.
    `class_names` sets the number of classes and their names of an architecture.
    """
    configure_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    check_detector_source(source)
    suffix = Path(source).suffix.lower()
    if suffix == ".pt":
        try:
            model = YOLO(source, task="detect")
        except Exception as exc:  # a corrupt or foreign checkpoint
            raise ModelError(f"cannot load detector weights {source}: {exc}") from None
        if class_names and list(model.names.values()) != list(class_names):
            raise ModelError(f"{source} predicts classes {list(model.names.values())}, expected {list(class_names)}")
        return model
    source = resolve_architecture(source)
    try:
        with seeded_init():
            model = YOLO(source, task="detect")
            if class_names:
                model.model = DetectionModel(model.model.yaml, nc=len(class_names), verbose=False)
                model.model.names = dict(enumerate(class_names))
    except FileNotFoundError:
        raise ModelError(
            f"detector architecture not found: {source} (use a path or an Ultralytics name like yolov8n.yaml)"
        ) from None
    return model


@contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Ultralytics sets torch to `cpu_count - 1` threads (1 on a 2-core machine) for the whole
    process whenever it trains or predicts on the CPU, so everything after it in the process
    (CLIP and segmenter training, evaluation) ran on one core; put back the block's own count."""
    import torch

    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def detect(model, images_rgb: list[np.ndarray], spec: DetectorSpec, tta: bool = False) -> list[Detections]:
    """Run the detector on RGB uint8 images (H, W, 3); return one `Detections` per image.
    `tta`: Ultralytics' test-time augmentation (flips and scales, merged)."""
    if not images_rgb:
        return []
    # Ultralytics treats numpy input as BGR (OpenCV order).
    images_bgr = [np.ascontiguousarray(img[..., ::-1]) for img in images_rgb]
    device = resolve_device(spec.device)
    # fp16 only where the device supports it; Ultralytics 8.4 names it `quantize=16`.
    quantize = 16 if spec.half and device.startswith("cuda") else None
    with torch_threads_kept():
        results = model.predict(
            images_bgr,
            imgsz=spec.imgsz,
            conf=spec.conf_threshold,
            iou=spec.iou_threshold,
            device=device,
            quantize=quantize,
            augment=tta,
            verbose=False,
        )
    out = []
    for result in results:
        boxes = result.boxes
        out.append(
            Detections(
                xyxy=boxes.xyxy.cpu().numpy().astype(np.float32),
                conf=boxes.conf.cpu().numpy().astype(np.float32),
                cls=boxes.cls.cpu().numpy().astype(np.int64),
            )
        )
    return out
