"""`quarry scan` (seeds 002, 003): stream images through a segmentation model (or a weighted
ensemble, seed 002) on a Ray Data actor pool; per image the forged-pixel share at a threshold,
connected regions over a minimum area, the maximum probability and a dark tag (mean brightness
< 30, seed 003); authentic images the rule flags are hard negatives, worst first, capped.
Images that cannot be read are error rows."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
from pydantic import Field

from engine.config import ConfigError, Section, config_to_dict
from engine.raycluster import ActorPoolConfig, RayConfig, check_actor_fits, own_errors_surface, ray_session
from engine.segment.metrics import FpRule, image_fp_stats, is_false_positive
from engine.storage import atomic_write_json, write_table
from engine.tracking import TrackingConfig

log = logging.getLogger("quarry.scan")
DARK_MEAN_MAX = 30.0


class ScanModel(Section):
    arch: str = "Unet"
    encoder: str = "resnet18"
    checkpoint: Path = Field(Path("runs/base/base_seg.pt"), description="the model's state_dict")
    weight: float = Field(1.0, gt=0.0, description="its weight in the ensemble's mean probability (seed 002: 1.2 ...)")


class ScanInput(Section):
    source: str = Field("runs/world/segmentation/index.parquet", description=(
        "a folder of images, or a table (.parquet/.csv) with an `image` column (relative to the table's folder)"))
    where: str | None = Field("kind == 'authentic' and split == 'train'", description="a table: pandas query of rows to scan")
    image_extensions: list[str] = [".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"]
    limit: int | None = Field(None, ge=1)


class ScanConfig(Section):
    """`quarry scan`: find the authentic images a segmentation model flags (hard negatives)."""

    input: ScanInput = ScanInput()
    models: list[ScanModel] = Field([ScanModel()], min_length=1)
    imgsz: int = Field(128, ge=32, le=4096, multiple_of=32)
    device: str = Field("auto", description=(
        "torch device of the models: auto (cuda when the actor has a GPU: pool.num_gpus_per_actor), cpu, cuda"))
    threshold: float = Field(0.75, gt=0.0, lt=1.0, description="seed 003: 0.75 (seed 002: 0.5)")
    min_fp_ratio: float = Field(0.001, ge=0.0, le=1.0, description="seed 002: forged share above 0.1 %")
    min_area_px: int = Field(500, ge=0, description="seed 003: a connected region of at least 500 px")
    max_samples: int = Field(500, ge=1, description="seed 002: keep the 500 worst")
    images_per_task: int = Field(32, ge=1, le=4096)
    pool: ActorPoolConfig = ActorPoolConfig()
    out_dir: Path = Path("runs/scan")
    tracking: TrackingConfig = TrackingConfig(experiment="quarry-scan")
    ray: RayConfig = RayConfig()


def list_images(inp: ScanInput) -> list[str]:
    source = Path(inp.source)
    if source.suffix.lower() in (".parquet", ".csv"):
        if not source.is_file():
            raise ConfigError(f"input.source = {inp.source!r}: no such table")
        table = pd.read_parquet(source) if source.suffix.lower() == ".parquet" else pd.read_csv(source)
        if "image" not in table.columns:
            raise ConfigError(f"input.source = {inp.source!r}: needs an `image` column (has {list(table.columns)})")
        if inp.where:
            try:
                table = table.query(inp.where)
            except Exception as exc:
                raise ConfigError(f"input.where = {inp.where!r}: {exc}") from None
        # absolute: the hard-negative table is read from other folders (`quarry build`) and by remote actors
        paths = [str((source.parent / p).resolve()) for p in table["image"]]
    elif source.is_dir():
        suffixes = {s.lower() for s in inp.image_extensions}
        paths = sorted(str(p.resolve()) for p in source.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    else:
        raise ConfigError(f"input.source = {inp.source!r}: not a folder or a table of images")
    if not paths:
        raise ConfigError(f"input.source = {inp.source!r}: no images to scan")
    return paths[: inp.limit] if inp.limit else paths


class ScanStage:
    """Holds the model(s); scores groups of images (Ray Data callable class)."""

    def __init__(self, cfg: dict):
        from engine.models import resolve_device
        from engine.models.segmenter import SegmenterSpec, build_segmenter
        from engine.offline import enable_offline
        from engine.staging import pull_on_this_node

        enable_offline()
        self.cfg = ScanConfig.model_validate(cfg)
        # on a node without the driver's mirror: the images (a table brings its folder) and the models
        pull_on_this_node({"input.source": self.cfg.input.source,
                           **{f"models[{i}].checkpoint": m.checkpoint for i, m in enumerate(self.cfg.models)}})
        device = resolve_device(self.cfg.device)  # before, the models stayed on the CPU of a GPU actor
        self.models = [build_segmenter(SegmenterSpec(arch=m.arch, encoder=m.encoder, checkpoint=m.checkpoint, device=device))
                       for m in self.cfg.models]
        self.weights = [m.weight for m in self.cfg.models]

    def __call__(self, batch: dict) -> pd.DataFrame:
        from engine.segment.predict import predict_probabilities, read_rgb

        rows, images, paths = [], [], []
        for path in json.loads(batch["paths_json"][0]):
            try:
                images.append(read_rgb(path))
                paths.append(path)
            except OSError as exc:
                rows.append({"path": path, "error": str(exc).split(": ", 1)[0] if Path(path).exists() else "file not found"})
        probs = predict_probabilities(self.models, images, self.cfg.imgsz, self.weights) if images else []
        rule = FpRule(self.cfg.threshold, self.cfg.min_fp_ratio, self.cfg.min_area_px)
        for path, image, prob in zip(paths, images, probs):
            stats = image_fp_stats(prob, rule.threshold)
            rows.append({"path": path, "error": "", **stats, "mean_brightness": float(image.mean()),
                         "dark": bool(image.mean() < DARK_MEAN_MAX), "hard_negative": is_false_positive(stats, rule)})
        columns = ["path", "error", "fp_ratio", "regions", "largest_region_px", "max_prob", "mean_brightness", "dark",
                   "hard_negative"]
        frame = pd.DataFrame(rows, columns=columns)
        return frame.astype({"path": str, "error": str}).fillna({"fp_ratio": 0.0, "regions": 0, "largest_region_px": 0,
                                                                 "max_prob": 0.0, "mean_brightness": 0.0, "dark": False,
                                                                 "hard_negative": False})


def run_scan(cfg: ScanConfig) -> dict:
    import ray

    for m in cfg.models:
        if not Path(m.checkpoint).is_file():
            raise ConfigError(f"models: checkpoint {str(m.checkpoint)!r} not found")
    paths = list_images(cfg.input)
    started = time.perf_counter()
    groups = [paths[i : i + cfg.images_per_task] for i in range(0, len(paths), cfg.images_per_task)]
    with ray_session(cfg.ray), own_errors_surface():
        check_actor_fits(cfg.ray, cfg.pool, "pool")
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"paths_json": json.dumps(g)} for g in groups], override_num_blocks=len(groups))
        ds = ds.map_batches(ScanStage, batch_size=1, batch_format="pandas",
                            fn_constructor_kwargs={"cfg": config_to_dict(cfg)}, **cfg.pool.map_batches_kwargs())
        scanned = pd.concat(list(ds.iter_batches(batch_size=None, batch_format="pandas")), ignore_index=True)
    scanned = scanned.sort_values("path").reset_index(drop=True)
    missing = sorted(set(paths) - set(scanned["path"]))  # never silently drop an input
    if missing:
        scanned = pd.concat([scanned, pd.DataFrame({"path": missing, "error": "scan produced no result"})], ignore_index=True)
    errors = scanned[scanned["error"] != ""][["path", "error"]]
    ok = scanned[scanned["error"] == ""].drop(columns=["error"])
    hard = ok[ok["hard_negative"]].sort_values(["fp_ratio", "path"], ascending=[False, True]).head(cfg.max_samples)
    out = Path(cfg.out_dir)
    write_table(ok, out / "scan.parquet", csv=True)
    write_table(hard.assign(image=hard["path"]), out / "hard_negatives.parquet", csv=True)
    write_table(errors, out / "errors.parquet")
    summary = {"out_dir": str(out), "images": len(paths), "scanned": len(ok), "errored": len(errors),
               "flagged": int(ok["hard_negative"].sum()), "hard_negatives": len(hard), "dark_flagged": int(hard["dark"].sum()),
               "rule": {"threshold": cfg.threshold, "min_fp_ratio": cfg.min_fp_ratio, "min_area_px": cfg.min_area_px},
               "errors": errors.to_dict("records"), "seconds": round(time.perf_counter() - started, 1),
               "hard_negatives_table": str(out / "hard_negatives.parquet")}
    atomic_write_json(out / "summary.json", summary)
    return summary


def summary_markdown(s: dict) -> str:
    """What `quarry scan` prints, as the other jobs print theirs (summary.json has it all)."""
    rule = s["rule"]
    lines = [f"# Scan -> {s['out_dir']}", "",
             f"- images: {s['images']} ({s['scanned']} scanned, {s['errored']} errored) in {s['seconds']} s",
             f"- flagged: {s['flagged']} (more than {rule['min_fp_ratio']:.1%} of the pixels at probability >= "
             f"{rule['threshold']:g}, a region of >= {rule['min_area_px']} px)",
             f"- hard negatives: {s['hard_negatives']} ({s['dark_flagged']} dark), worst first -> {s['hard_negatives_table']}"]
    if s.get("mlflow_run_id"):
        lines.append(f"- MLflow run {s['mlflow_run_id']} ({s['tracking_uri']})")
    if s["errors"]:
        lines += ["", "| path | error |", "|---|---|", *[f"| {e['path']} | {e['error']} |" for e in s["errors"]]]
    return "\n".join(lines) + "\n"
