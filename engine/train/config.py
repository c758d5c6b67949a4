"""Config of fine-tuning (`quarry train`): detection or segmentation on Ray Train."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from engine.build.config import WeightRules
from engine.config import Section
from engine.raycluster import RayConfig, check_local_ray_fits
from engine.tracking import TrackingConfig
from engine.tune.objective import ObjectiveConfig

# What the detection loop reports each epoch before it computes the objective
# (engine/train/detect_loop.py; a test checks a run's history against it): the names an
# objective may use. A typo used to fail in every trial's workers, each retried, minutes later.
DETECT_EPOCH_METRICS = ("epoch", "train_loss", "box_loss", "cls_loss", "dfl_loss", "fp_penalty", "lr", "epoch_seconds",
                        "steps", "val_map50", "val_map50_95", "val_precision", "val_recall", "val_images", "val_tp",
                        "val_fp", "val_fn", "val_negative_images", "val_fp_rate", "val_fp_per_negative_image",
                        "val_frame_recall", "val_hn_fp_rate")


class ScalingSection(Section):
    """Ray Train's workers: the same code on 2 CPU workers (gloo) and N GPUs (nccl)."""

    num_workers: int = Field(2, ge=1, le=1024, description="DDP workers")
    use_gpu: bool = Field(False, description="one GPU per worker (nccl); off: CPU workers (gloo)")
    cpus_per_worker: float = Field(1.0, gt=0.0, le=128.0)
    gpus_per_worker: float = Field(1.0, gt=0.0, le=8.0, description=(
        "with use_gpu; a fraction only with num_workers 1 (Tune trials of one worker then share a GPU)"))

    @model_validator(mode="after")
    def _one_rank_per_gpu(self):
        # Measured on an H100: two DDP workers at 0.5 GPU each land on one device and NCCL's first
        # barrier fails with "Duplicate GPU detected : rank 0 and rank 1 both on CUDA device".
        if self.use_gpu and self.num_workers > 1 and self.gpus_per_worker < 1:
            raise ValueError(f"scaling.gpus_per_worker={self.gpus_per_worker} with scaling.num_workers={self.num_workers}: NCCL "
                             "cannot run two workers of one job on the same GPU; give each worker a whole GPU "
                             "(gpus_per_worker: 1) or train on one worker")
        return self

    def check_fits(self, ray_cfg: RayConfig, keys: str = "", extra: tuple[str, float] | None = None) -> None:
        """Every worker of a run starts at once, so all of them must fit a local Ray
        (`check_local_ray_fits`); `extra`: (its key, CPUs) that the run holds besides them."""
        cpus = self.num_workers * self.cpus_per_worker + (extra[1] if extra else 0.0)
        gpus = self.num_workers * self.gpus_per_worker if self.use_gpu else 0.0
        asked = (f"{keys}scaling.num_workers = {self.num_workers} x cpus_per_worker = {self.cpus_per_worker:g}"
                 + (f" x gpus_per_worker = {self.gpus_per_worker:g}" if self.use_gpu else "")
                 + (f" + {extra[0]} = {extra[1]:g}" if extra else ""))
        check_local_ray_fits(ray_cfg, {"CPU": cpus, "GPU": gpus}, asked)

    def ray_scaling_config(self):
        """Ray Train's ScalingConfig for these workers."""
        from ray.train import ScalingConfig

        resources = {"CPU": self.cpus_per_worker, **({"GPU": self.gpus_per_worker} if self.use_gpu else {})}
        return ScalingConfig(num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker=resources)


class DetectTrainConfig(Section):
    """Fine-tuning an Ultralytics detector in Quarry's own loop (sampling, loss weights and the
    FP penalty are ours; the box/cls/dfl loss is Ultralytics')."""

    model: str = Field("runs/base/base.pt", description="start from a local .pt (fine-tune) or an architecture .yaml")
    imgsz: int = Field(256, ge=32, le=4096, multiple_of=32, description="letterboxed square input, pixels")
    epochs: int = Field(10, ge=1, le=10_000)
    batch: int = Field(16, ge=1, le=4096, description="images per step per worker")
    samples_per_epoch: int | None = Field(None, ge=1, description="draws per epoch over all workers (None: the train split's size)")
    optimizer: Literal["AdamW", "SGD"] = "AdamW"
    lr: float = Field(0.001, gt=0.0, le=1.0, description="peak learning rate (linear warmup, then cosine to lr_final)")
    lr_final: float = Field(0.01, ge=0.0, le=1.0, description="final learning rate as a fraction of lr")
    momentum: float = Field(0.937, ge=0.0, lt=1.0, description="SGD momentum / AdamW beta1")
    weight_decay: float = Field(5e-4, ge=0.0, le=1.0)
    warmup_epochs: float = Field(1.0, ge=0.0, description="epochs of linear warmup")
    accumulate: int = Field(1, ge=1, le=256, description="steps whose gradients are summed before an update")
    grad_clip: float = Field(10.0, gt=0.0, description="max gradient norm")
    amp: bool = Field(True, description="mixed precision on GPU (ignored on CPU)")
    ema: bool = Field(True, description="validate and save an exponential moving average of the weights")
    fp_penalty: float = Field(1.0, ge=0.0, le=100.0, description="weight of the FP penalty on images with no object")
    fp_top_k: int = Field(10, ge=1, description="anchors averaged for an image's FP penalty (a smooth max)")
    augment: Literal["none", "light", "medium", "heavy", "weather"] = "light"
    conf_threshold: float = Field(0.25, ge=0.0, le=1.0, description="validation: precision/recall/FP rate at this confidence")
    fitness_fp_weight: float = Field(0.5, ge=0.0, description="best model: mAP50-95 - this x FP rate on hard-negative val frames")
    patience: int = Field(5, ge=1, description="epochs without a better fitness before stopping")
    workers: int = Field(0, ge=0, le=64, description="dataloader processes per Ray Train worker")
    seed: int = Field(0, ge=0)


class SegmentVariant(Section):
    arch: str = Field("Unet", description="smp architecture")
    encoder: str = Field("resnet18", description="smp encoder")
    checkpoint: Path | None = Field(None, description="start from this state_dict (None: random weights)")
    noise_residual: bool | None = Field(None, description=(
        "a fixed high-pass noise residual beside the image (None: as the checkpoint; random weights: no)"))


class SegmentTrainConfig(Section):
    """Fine-tuning smp segmentation models with seed 003's loss; several named variants."""

    variants: dict[str, SegmentVariant] = Field(
        {"unet_r18": SegmentVariant(), "fpn_r18": SegmentVariant(arch="FPN")},
        description="named models trained one after the other (seed 003 fine-tunes four)")
    models: list[str] | None = Field(None, description="train only these variants (None: all)")
    imgsz: int = Field(128, ge=32, le=4096, multiple_of=32)
    epochs: int = Field(25, ge=1, le=10_000)
    batch: int = Field(8, ge=1, le=1024)
    lr: float = Field(1e-4, gt=0.0, le=1.0, description="seed 002/003: 1e-4, cosine")
    weight_decay: float = Field(1e-4, ge=0.0, le=1.0)
    focal_w: float = Field(0.5, ge=0.0)
    dice_w: float = Field(0.5, ge=0.0)
    fp_penalty: float = Field(4.0, ge=0.0, description="seed 003: 4.0 (V3 used 2.0)")
    augment: Literal["none", "light", "medium", "heavy", "weather"] = "light"
    threshold: float = Field(0.5, gt=0.0, lt=1.0, description="pixel probability counted as forged")
    min_fp_ratio: float = Field(0.001, ge=0.0, le=1.0, description="an authentic image is a false positive above this share (seed 002)")
    patience: int = Field(10, ge=1)
    workers: int = Field(0, ge=0, le=64)
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _known_models(self):
        unknown = sorted(set(self.models or []) - set(self.variants))
        if unknown:
            raise ValueError(f"segment.models {unknown} are not variants ({sorted(self.variants)})")
        return self


class RegistryConfig(Section):
    register_model: bool = Field(True, description="register the best model as a new version in the MLflow registry")
    model_name: str | None = Field(None, description="registered model name (default: quarry-detector / quarry-segmenter-<variant>)")


class TrainConfig(Section):
    """`quarry train`: DDP fine-tuning on Ray Train with weighted hard-negative sampling."""

    task: Literal["detect", "segment"] = "detect"
    data: Path = Field(Path("runs/dataset"), description="a set built by `quarry build` (samples.parquet)")
    out_dir: Path = Field(Path("runs/train"), description="best model, history, Ray Train checkpoints")
    detect: DetectTrainConfig = DetectTrainConfig()
    segment: SegmentTrainConfig = SegmentTrainConfig()
    scaling: ScalingSection = ScalingSection()
    max_failures: int = Field(2, ge=0, description="restarts from the last checkpoint after a worker dies")
    resume_from: Path | None = Field(None, description=(
        "continue a stopped run: a Ray Train checkpoint folder, or `latest` (the newest under out_dir/ray)"))
    reweight: WeightRules | None = Field(None, description=(
        "recompute the sampling weights from the set's samples with these rules (None: the build's weights); Tune searches them"))
    objective: ObjectiveConfig | None = Field(None, description=(
        "report this objective each epoch and keep the best model by it (None: by fitness); Tune optimises it"))
    registry: RegistryConfig = RegistryConfig()
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-train")
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _objective_of_reported_metrics(self):
        if self.objective is None:
            return self
        if self.task != "detect":
            raise ValueError("objective: only detection training reports one (task=detect)")
        for key in ("metric", "constraint_metric", "tiebreak_metric"):
            name = getattr(self.objective, key)
            if name is not None and name not in DETECT_EPOCH_METRICS:
                raise ValueError(f"objective.{key} = {name!r}: not a metric an epoch reports "
                                 f"(one of {', '.join(DETECT_EPOCH_METRICS)})")
        return self
