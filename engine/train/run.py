"""One `quarry train` run: an MLflow run opened by the driver (rank 0 logs its epochs into it),
detection or each segmentation variant fitted on Ray Train, the best model copied out, logged
and registered with tags (dataset hash, base model, config hash)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from engine.config import ConfigError, config_hash
from engine.raycluster import ray_session
from engine.storage import atomic_write_json
from engine.tracking import REGISTRY_STORE_DIR, mlflow_run, resolve_tracking_uri
from engine.train.config import TrainConfig
from engine.train.trainer import latest_checkpoint, run_torch_trainer

log = logging.getLogger("quarry.train")


def dataset_hash(data: Path) -> str:
    summary = Path(data) / "summary.json"
    return json.loads(summary.read_text()).get("dataset_hash", "unknown") if summary.is_file() else "unknown"


def _resume_dir(cfg: TrainConfig) -> str | None:
    if cfg.resume_from is None:
        return None
    found = latest_checkpoint(cfg.out_dir) if str(cfg.resume_from) == "latest" else Path(cfg.resume_from)
    if found is None or not (Path(found) / "state.pt").is_file():
        raise ConfigError(f"resume_from = {str(cfg.resume_from)!r}: no checkpoint there (a folder with state.pt)")
    return str(Path(found).resolve())


def check_inputs(cfg: TrainConfig, keys: str = "") -> None:
    """Fail before any work: the built set (its task, both splits), then the detector. `keys`:
    where the training config sits in the job's (tune's `train.`), for the keys errors name."""
    data = f"{keys}data = {str(cfg.data)!r}"
    if not (Path(cfg.data) / "samples.parquet").is_file():
        raise ConfigError(f"{data}: no built set (samples.parquet) there; run `quarry build` first")
    import pandas as pd

    from engine.build.run import built_set_task

    samples = pd.read_parquet(Path(cfg.data) / "samples.parquet")
    for split in ("train", "val"):
        if not (samples["split"] == split).any():
            raise ConfigError(f"{data}: the {split} split is empty")
    held = built_set_task(samples.columns)
    if cfg.task == "detect" and held != "detect":
        raise ConfigError(f"{data}: a segmentation set; use {keys}task=segment")
    if cfg.task == "segment" and held != "segment":
        raise ConfigError(f"{data}: a detection set; use {keys}task=detect")
    if cfg.task == "detect":
        from engine.models.detector import check_detector_source

        check_detector_source(cfg.detect.model)


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with its local input paths made absolute: Ray Train workers do not run in the
    driver's working directory, so `data=runs/dataset` would name nothing there."""
    cfg = cfg.model_copy(deep=True)
    cfg.data, cfg.out_dir = Path(cfg.data).resolve(), Path(cfg.out_dir).resolve()
    if Path(cfg.detect.model).is_file():
        cfg.detect.model = str(Path(cfg.detect.model).resolve())
    for variant in cfg.segment.variants.values():
        if variant.checkpoint is not None:
            variant.checkpoint = Path(variant.checkpoint).resolve()
    return cfg


def run_training(cfg: TrainConfig) -> dict:
    check_inputs(cfg)
    cfg = with_absolute_paths(cfg)
    out = Path(cfg.out_dir)
    resume = _resume_dir(cfg)
    uri = resolve_tracking_uri(cfg.tracking.tracking_uri, REGISTRY_STORE_DIR) if cfg.tracking.enabled else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    ch, data_hash = config_hash(cfg), dataset_hash(cfg.data)
    jobs = [("detector", None)] if cfg.task == "detect" else [
        ("segmenter", name) for name in (cfg.segment.models or list(cfg.segment.variants))]
    results = {}
    with ray_session(cfg.ray, dashboard=True):  # Ray Train asks its state API
        cfg.scaling.check_fits(cfg.ray)
        for kind, variant in jobs:
            label = variant or "detector"
            tags = {"quarry.job": "train", "quarry.config_hash": ch, "quarry.dataset_hash": data_hash,
                    "quarry.base_model": cfg.detect.model if kind == "detector" else
                    str(cfg.segment.variants[variant].checkpoint or f"{cfg.segment.variants[variant].arch}/random")}
            run_name = f"train-{label}-{stamp}"
            if uri:
                with mlflow_run(uri, cfg.tracking.experiment, run_name, cfg.model_dump(mode="json"), tags) as run:
                    run_id = run.info.run_id
            mlflow_cfg = {"tracking_uri": uri, "run_id": run_id} if uri else None
            results[label] = _fit(cfg, kind, variant, out, run_name, resume, mlflow_cfg)
            if uri:
                results[label]["mlflow_run_id"] = run_id
                if cfg.registry.register_model:
                    name = cfg.registry.model_name or ("quarry-detector" if kind == "detector" else f"quarry-segmenter-{variant}")
                    from engine.registry.models import log_and_register

                    results[label]["registered"] = log_and_register(
                        run_id, uri, kind, Path(results[label]["best_model"]), name, results[label]["model_config"],
                        {**tags, "quarry.best_epoch": results[label]["best_epoch"]})
    summary = {"task": cfg.task, "out_dir": str(out), "config_hash": ch, "dataset_hash": data_hash, "tracking_uri": uri,
               "models": results}
    atomic_write_json(out / "summary.json", summary)
    return summary


def _fit(cfg: TrainConfig, kind: str, variant: str | None, out: Path, run_name: str, resume: str | None,
         mlflow_cfg: dict | None) -> dict:
    loop_config = {"train": cfg.model_dump(mode="json"), "mlflow": mlflow_cfg, "resume_from": resume,
                   "variant": variant}
    inputs = {"data": cfg.data, "resume_from": resume}
    if kind == "detector":
        from engine.train.detect_loop import detect_train_loop

        best = out / "best.pt"
        fitted = run_torch_trainer(detect_train_loop, loop_config, cfg.scaling, cfg.max_failures, out, run_name,
                                   {"best_model": best}, {**inputs, "detect.model": cfg.detect.model})
        model_config = {"imgsz": cfg.detect.imgsz, "conf": cfg.detect.conf_threshold}
    else:
        from engine.segment.loop import segment_train_loop

        best = out / variant / "best.pt"
        fitted = run_torch_trainer(segment_train_loop, loop_config, cfg.scaling, cfg.max_failures, out, run_name,
                                   {"best_model": best}, {**inputs, f"segment.variants.{variant}.checkpoint":
                                                          cfg.segment.variants[variant].checkpoint})
        v = cfg.segment.variants[variant]
        model_config = {"arch": v.arch, "encoder": v.encoder, "imgsz": cfg.segment.imgsz, "threshold": cfg.segment.threshold}
    history = fitted["history"]
    fitness = [h.get("fitness") for h in history]
    best_epoch = history[fitness.index(max(f for f in fitness if f is not None))]["epoch"] if history else None
    atomic_write_json(best.parent / "history.json", history)
    return {"best_model": str(best), "best_epoch": best_epoch, "epochs_run": len(history), "history": history,
            "final": history[-1] if history else {}, "best": next((h for h in history if h["epoch"] == best_epoch), {}),
            "seconds": fitted["seconds"], "checkpoint": fitted["checkpoint"], "model_config": model_config}
