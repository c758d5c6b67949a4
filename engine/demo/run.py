"""The demo's steps, each reused when its config and inputs are unchanged since the last run
in the same work dir (the report says so):

  1. synth      the world: videos with ground truth, still-image sets, captioned frames
  2. pretrain   the base detector (Ultralytics' trainer) and a tiny CLIP, scored on held-out frames
  3. mine       false-alarm mining: frames of fp/clean videos where the base model would alarm
  4. flicker    flicker mining on every video, scored against the world's ground truth
     edges      edge-case mining (seed 000's fused-score band) on the work-zone (tp) videos, the
                frames a labeller should look at; scored against the world's ground truth
  5. label      pseudo-labels for the videos' frames, false-alarm boxes dropped by rule
  6. review     the mined candidates categorised by CLIP zero-shot and sheeted; accepted
                as hard negatives (they come from videos labelled false alarms)
  7. build      the training set: base data + labelled frames + accepted hard negatives
  8. train      fine-tune the base detector on 2 Ray Train workers; base vs fine-tuned on held-out frames
  9. tune       a few short Ray Tune trials over the FP penalty, lr and the hard-negative weight;
                the best is registered as quarry-detector@challenger
 10. evaluate   base vs fine-tuned vs tuned on held-out frames and videos (events through the gate)
 11. promote    the base model is @champion unless one exists; the challenger replaces it only
                when the promotion gate holds
 12. scan       the base segmenter over the authentic training images: hard negatives
 13. segment    build the segmentation set (forged + zero-mask hard negatives) and fine-tune
                with seed 003's loss; base vs fine-tuned FP rate on held-out authentic images

With `rounds=N`, rounds 2..N follow step 11 (`later_round`): fresh videos are mined and labelled
with the promoted model, their hard negatives join the previous round's set, the promoted model
is fine-tuned on it and must pass the same gate against itself.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from engine.build.config import BuildConfig
from engine.config import config_hash, load_config, write_resolved_config
from engine.demo.config import CATEGORY_OF_KIND, DemoConfig
from engine.demo.report import final_figures
from engine.evaluate.config import ModelRef
from engine.evaluate.run import EvaluateConfig
from engine.evaluate.world_truth import edge_truth_report, flicker_truth_report, load_truth
from engine.labels.config import LabelConfig
from engine.mining.config import MineConfig
from engine.registry.promote import PromoteConfig
from engine.review.config import ReviewConfig
from engine.storage import atomic_write_json, write_table
from engine.synth.config import SynthConfig
from engine.train.config import TrainConfig
from engine.tune.run import search_hash, stored_search_hash

log = logging.getLogger("quarry.demo")

def _cached(marker: Path, key: str, reuse: bool) -> dict | None:
    """The summary stored at `marker` if it was made with `key`, else None."""
    if reuse and marker.is_file():
        stored = json.loads(marker.read_text())
        if stored.get("key") == key:
            return stored["summary"]
    return None


def run_step(name: str, out_dir: Path, key: str, reuse: bool, run: Callable[[], dict]) -> dict:
    """Run one step, or reuse its summary when its key (config + upstream keys) is unchanged."""
    started = time.perf_counter()
    marker = Path(out_dir) / ".demo-step.json"
    summary = _cached(marker, key, reuse)
    reused = summary is not None
    if not reused:
        log.info("step %s -> %s", name, out_dir)
        summary = run()
        atomic_write_json(marker, {"key": key, "summary": summary})
    return {**summary, "key": key, "reused": reused, "step_seconds": round(time.perf_counter() - started, 1)}


def categorisation_accuracy(candidates: pd.DataFrame, reviews: pd.DataFrame) -> dict:
    """How often CLIP's category names the lookalike the world drew (seed 000's categories)."""
    table = candidates.assign(candidate_id=candidates["video_key"] + "_f" + candidates["frame"].astype(str))
    table = table.merge(reviews, on="candidate_id")
    truth = table["lookalike_kind"].map(CATEGORY_OF_KIND)
    known = truth.notna()
    return {"candidates": int(known.sum()),
            "accuracy": round(float((table["category"][known] == truth[known]).mean()), 4) if known.any() else None}


def evaluation_step(cfg: EvaluateConfig) -> dict:
    from engine.evaluate.run import headline, run_evaluation

    result = run_evaluation(cfg)
    return {"report": result["report"], "seconds": result["seconds"],
            "models": {name: {"source": m["source"], **headline(m)} for name, m in result["models"].items()}}


def promotion_step(cfg: PromoteConfig, base_weights: Path) -> dict:
    """Promote the challenger over the champion; with no champion yet, the base model is
    registered as the one in service first. A refusal is a result of the demo, not a failure."""
    from engine.errors import Refused
    from engine.registry.models import register_as
    from engine.registry.promote import promote
    from engine.registry.resolve import registered_version

    uri = cfg.tracking.tracking_uri
    seeded = None
    if registered_version(uri, f"models:/{cfg.model_name}@{cfg.champion}") is None:
        seeded = register_as(uri, cfg.tracking.experiment, "detector", base_weights, cfg.model_name, cfg.champion,
                             {"quarry.job": "demo", "quarry.role": "base model"})
    try:
        summary = promote(cfg)
    except Refused as refusal:
        summary = {**refusal.details, "reason": str(refusal)}
    return {**summary, "base_registered": seeded}


def mining_config(config: DemoConfig, out: Path, selection, videos: Path, detector: Path, clip: Path | None,
                  tracking_uri: str) -> MineConfig:
    """The demo's mining settings over `videos` with `detector` (and the CLIP pretrain trained,
    standing in for the user's)."""
    cfg = config.mine.model_copy(deep=True)
    cfg.input.source = str(videos)
    cfg.output.out_dir = out
    cfg.selection = selection
    cfg.scoring.detector.source = str(detector)
    cfg.scoring.clip.checkpoint = clip
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def review_step(config: DemoConfig, manifest: Path, clip_override: list[str]) -> dict:
    """Categorise the candidates with CLIP, accept those of false-alarm videos, sheet them."""
    from engine.review.reviews import current_reviews
    from jobs import review

    reviews = manifest.parent / "reviews.jsonl"
    reviews.unlink(missing_ok=True)  # the demo's answers are its own: start them afresh
    base = [f"candidates={manifest}", f"categories={json.dumps(config.categories)}"]
    categorised = review.run(load_config(ReviewConfig, None, [*base, "command=categorise", "categorise.method=clip",
                                                              *clip_override]))
    accepted = review.run(load_config(ReviewConfig, None, [*base, "command=accept", "select.video_labels=[fp, clean]"]))
    sheet = review.run(load_config(ReviewConfig, None, [*base, "command=sheet"]))
    accuracy = categorisation_accuracy(pd.read_parquet(manifest), current_reviews(reviews))
    return {"categorised": categorised["by_category"], "accepted": accepted["accepted"], "sheet": sheet["sheet"],
            "category_accuracy": accuracy}


def label_config(config: DemoConfig, world: Path, detector: Path, out: Path, tracking_uri: str) -> LabelConfig:
    cfg = config.label.model_copy(deep=True)
    cfg.input.source = str(world / "videos.parquet")
    cfg.detector.source = str(detector)
    cfg.output.out_dir, cfg.ground_truth = out, world
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def build_config(config: DemoConfig, base_data: Path, labels: Path, manifest: Path, out: Path,
                 clip: Path | None) -> BuildConfig:
    cfg = config.build.model_copy(deep=True)
    cfg.detect.base_data, cfg.detect.labels, cfg.detect.candidates = base_data, labels, manifest
    cfg.out_dir, cfg.clip.checkpoint = out, clip
    return cfg


def train_config(config: DemoConfig, data: Path, model: Path, out: Path, tracking_uri: str) -> TrainConfig:
    cfg = config.train.model_copy(deep=True)
    cfg.data, cfg.out_dir, cfg.detect.model = data, out, str(model)
    if cfg.tracking.tracking_uri is None:
        cfg.tracking.tracking_uri = tracking_uri
    return cfg


def evaluate_config(config: DemoConfig, out: Path, clip: Path | None, tracking_uri: str,
                    models: list[ModelRef]) -> EvaluateConfig:
    """`models` on the world's held-out frames and videos; events are mined with the demo's
    settings and cached per model content under <work>/events, so every round shares them."""
    work = Path(config.work_dir)
    cfg = config.evaluate.model_copy(deep=True)
    cfg.world, cfg.out_dir, cfg.events_dir, cfg.models = work / "world", out, work / "events", models
    cfg.mining = mining_config(config, work / "events", config.evaluate.mining.selection, work / "world" / "videos.parquet",
                               work / "base" / "base.pt", clip, tracking_uri)
    cfg.tracking.tracking_uri = cfg.tracking.tracking_uri or tracking_uri
    return cfg


def later_round(config: DemoConfig, r: int, upstream_key: str, previous_set: Path, clip: Path | None,
                clip_override: list[str], promote_cfg: PromoteConfig, tracking_uri: str) -> dict:
    """Round r >= 2 (seed 000's phase 4, "expand the hard-negative set, repeat"): fresh videos
    mined and labelled with the model in service (@champion); their hard negatives join the
    previous round's set; the champion is fine-tuned on it, registered @challenger, judged
    against the champion on the same held-out data and promoted by the same gate."""
    from mlflow.tracking import MlflowClient

    from engine.mining.identity import file_sha256
    from engine.registry.resolve import resolve_model
    from engine.synth.world import generate_round_videos
    from jobs import build, label, mine, train

    work, root, name = Path(config.work_dir), Path(config.work_dir) / f"round{r}", promote_cfg.model_name
    champion, info = resolve_model(f"models:/{name}@{promote_cfg.champion}", tracking_uri, root / "models")
    upstream = upstream_key + file_sha256(champion)
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=root / "world", seed=config.seed, videos=config.videos)
    steps["synth"] = run_step(f"round{r}.synth", synth_cfg.out_dir, config_hash(synth_cfg), config.reuse,
                              lambda: generate_round_videos(synth_cfg, r))
    videos = root / "world" / "videos.parquet"
    mine_cfg = mining_config(config, root / "mine", config.mine.selection, videos, champion, clip, tracking_uri)
    key = config_hash(mine_cfg) + upstream + steps["synth"]["key"]
    steps["mine"] = run_step(f"round{r}.mine", root / "mine", key, config.reuse, lambda: mine.run(mine_cfg))
    label_cfg = label_config(config, root / "world", champion, root / "label", tracking_uri)
    key = config_hash(label_cfg) + upstream + steps["synth"]["key"]
    steps["label"] = run_step(f"round{r}.label", root / "label", key, config.reuse, lambda: label.run(label_cfg))
    manifest = root / "mine" / "candidates.parquet"
    steps["review"] = run_step(f"round{r}.review", root / "mine" / "sheet", steps["mine"]["key"] + json.dumps(config.categories),
                               config.reuse, lambda: review_step(config, manifest, clip_override))
    build_cfg = build_config(config, previous_set / "data.yaml", root / "label" / "labels.parquet", manifest,
                             root / "dataset", clip)
    key = config_hash(build_cfg) + steps["label"]["key"] + steps["review"]["key"]
    steps["build"] = run_step(f"round{r}.build", build_cfg.out_dir, key, config.reuse, lambda: build.run(build_cfg))

    train_cfg = train_config(config, root / "dataset", champion, root / "train", tracking_uri)
    train_cfg.registry.register_model, train_cfg.registry.model_name = True, name

    def train_step() -> dict:
        summary = train.run(train_cfg)
        version = summary["models"]["detector"]["registered"]["version"]
        MlflowClient(tracking_uri).set_registered_model_alias(name, promote_cfg.challenger, version)
        return summary

    key = config_hash(train_cfg) + steps["build"]["key"]
    steps["train"] = run_step(f"round{r}.train", train_cfg.out_dir, key, config.reuse, train_step)
    version = steps["train"]["models"]["detector"]["registered"]["version"]
    eval_cfg = evaluate_config(config, root / "evaluate", clip, tracking_uri, [
        ModelRef(name="champion", source=f"models:/{name}/{info['version']}"),
        ModelRef(name=f"round{r}", source=f"models:/{name}/{version}")])
    key = config_hash(eval_cfg) + steps["train"]["key"]
    steps["evaluate"] = run_step(f"round{r}.evaluate", eval_cfg.out_dir, key, config.reuse,
                                 lambda: evaluation_step(eval_cfg))
    round_promote = promote_cfg.model_copy(update={"evaluation": eval_cfg, "out_dir": root / "promote"})
    key = config_hash(round_promote) + steps["evaluate"]["key"]
    steps["promote"] = run_step(f"round{r}.promote", round_promote.out_dir, key, config.reuse,
                                lambda: promotion_step(round_promote, work / "base" / "base.pt"))
    return {"round": r, "champion": info, "steps": steps}


def run_demo(config: DemoConfig) -> dict:
    from jobs import build, label, mine, pretrain, scan, synth, train, tune

    work = Path(config.work_dir)
    write_resolved_config(config, work)
    tracking_uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=work / "world", seed=config.seed, videos=config.videos,
                            heldout_videos=config.heldout_videos, detection=config.detection,
                            segmentation=config.segmentation, captions=config.captions)
    steps["synth"] = run_step("synth", synth_cfg.out_dir, config_hash(synth_cfg), config.reuse, lambda: synth.run(synth_cfg))

    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base", evaluation=config.evaluation,
                                      training=config.base_model.model_copy(update={"seed": config.seed}), clip=config.clip,
                                      segmenter=config.segmenter)
    pre_cfg.tracking.tracking_uri = tracking_uri
    key = config_hash(pre_cfg) + steps["synth"]["key"]
    steps["pretrain"] = run_step("pretrain", pre_cfg.out_dir, key, config.reuse, lambda: pretrain.run(pre_cfg))
    clip_checkpoint = work / "base" / "clip.pt" if config.clip.enabled else None
    base_weights, videos = work / "base" / "base.pt", work / "world" / "videos.parquet"

    def mining(out: Path, selection) -> MineConfig:
        return mining_config(config, out, selection, videos, base_weights, clip_checkpoint, tracking_uri)

    mine_cfg = mining(work / "mine", config.mine.selection)
    key = config_hash(mine_cfg) + steps["pretrain"]["key"]
    steps["mine"] = run_step("mine", mine_cfg.output.out_dir, key, config.reuse, lambda: mine.run(mine_cfg))

    flicker_cfg = mining(work / "mine-flicker", config.flicker)

    def flicker_step() -> dict:
        summary = mine.run(flicker_cfg)
        candidates = pd.read_parquet(flicker_cfg.output.out_dir / "candidates.parquet")
        return {**summary, "truth": flicker_truth_report(candidates, load_truth(work / "world"))}

    key = config_hash(flicker_cfg) + steps["pretrain"]["key"]
    steps["flicker"] = run_step("flicker", flicker_cfg.output.out_dir, key, config.reuse, flicker_step)

    edges_cfg = mining(work / "mine-edges", config.edges)
    edges_cfg.input.source = str(work / "mine-edges" / "tp_videos.parquet")

    def edges_step() -> dict:
        table = pd.read_parquet(videos)
        tp = table[table["video_label"] == "tp"]
        write_table(tp.assign(video_uri=[str((videos.parent / u).resolve()) for u in tp["video_uri"]]),
                    Path(edges_cfg.input.source))
        summary = mine.run(edges_cfg)
        candidates = pd.read_parquet(edges_cfg.output.out_dir / "candidates.parquet")
        frames = pd.read_parquet(work / "world" / "ground_truth" / "frames.parquet")
        return {**summary, "truth": edge_truth_report(candidates, frames)}

    key = config_hash(edges_cfg) + steps["pretrain"]["key"]
    steps["edges"] = run_step("edges", edges_cfg.output.out_dir, key, config.reuse, edges_step)

    label_cfg = label_config(config, work / "world", base_weights, work / "label", tracking_uri)
    key = config_hash(label_cfg) + steps["pretrain"]["key"]
    steps["label"] = run_step("label", label_cfg.output.out_dir, key, config.reuse, lambda: label.run(label_cfg))

    manifest = work / "mine" / "candidates.parquet"
    clip_override = [f"categorise.clip.checkpoint={clip_checkpoint}"] if clip_checkpoint else []
    key = config_hash(load_config(ReviewConfig, None, clip_override)) + json.dumps(config.categories) + steps["mine"]["key"]
    steps["review"] = run_step("review", work / "mine" / "sheet", key, config.reuse,
                               lambda: review_step(config, manifest, clip_override))

    build_cfg = build_config(config, work / "world" / "detection" / "data.yaml", work / "label" / "labels.parquet",
                             manifest, work / "dataset", clip_checkpoint)
    key = config_hash(build_cfg) + steps["label"]["key"] + steps["review"]["key"]
    steps["build"] = run_step("build", build_cfg.out_dir, key, config.reuse, lambda: build.run(build_cfg))

    train_cfg = train_config(config, work / "dataset", base_weights, work / "train", tracking_uri)

    def train_step() -> dict:
        from engine.evaluate.heldout import evaluate_heldout
        from engine.models.detector import DetectorSpec, build_detector

        summary = train.run(train_cfg)
        spec = DetectorSpec(source=summary["models"]["detector"]["best_model"], imgsz=config.evaluation.imgsz,
                            conf_threshold=config.evaluation.conf_threshold, device=config.evaluation.device)
        tuned = evaluate_heldout(build_detector(spec.source), work / "world" / "heldout", spec,
                                 config.evaluation.iou_threshold)
        return {**summary, "heldout": {"base": steps["pretrain"]["heldout"], "fine_tuned": tuned}}

    key = config_hash(train_cfg) + steps["build"]["key"]
    steps["train"] = run_step("train", train_cfg.out_dir, key, config.reuse, train_step)

    tune_cfg = config.tune.model_copy(deep=True)
    tune_cfg.train.data, tune_cfg.out_dir = work / "dataset", work / "tune"
    tune_cfg.train.detect.model = str(base_weights)
    if tune_cfg.tracking.tracking_uri is None:
        tune_cfg.tracking.tracking_uri = tracking_uri
    key = config_hash(tune_cfg) + steps["build"]["key"]
    if stored_search_hash(tune_cfg.out_dir) not in (None, search_hash(tune_cfg)):
        tune_cfg.resume = False  # a search made with another config or set: start afresh
    steps["tune"] = run_step("tune", tune_cfg.out_dir, key, config.reuse, lambda: tune.run(tune_cfg))

    registered = steps["tune"]["registered"]
    eval_cfg = evaluate_config(config, work / "evaluate", clip_checkpoint, tracking_uri, [
        ModelRef(name="base", source=str(base_weights)),
        ModelRef(name="fine_tuned", source=steps["train"]["models"]["detector"]["best_model"]),
        ModelRef(name="tuned", source=f"models:/{registered['name']}/{registered['version']}")])
    key = config_hash(eval_cfg) + steps["train"]["key"] + steps["tune"]["key"]
    steps["evaluate"] = run_step("evaluate", eval_cfg.out_dir, key, config.reuse, lambda: evaluation_step(eval_cfg))

    promote_cfg = PromoteConfig(model_name=registered["name"], gate=config.promote, evaluation=eval_cfg,
                                out_dir=work / "promote", tracking=eval_cfg.tracking.model_copy())
    key = config_hash(promote_cfg) + steps["evaluate"]["key"]
    steps["promote"] = run_step("promote", promote_cfg.out_dir, key, config.reuse,
                                lambda: promotion_step(promote_cfg, base_weights))

    rounds, upstream = [], steps["promote"]["key"]
    for r in range(2, config.rounds + 1):
        rounds.append(later_round(config, r, upstream, work / "dataset" if r == 2 else work / f"round{r - 1}" / "dataset",
                                  clip_checkpoint, clip_override, promote_cfg, tracking_uri))
        upstream = rounds[-1]["steps"]["promote"]["key"]

    seg_ready = config.segmenter.enabled
    if seg_ready:
        scan_cfg = config.scan.model_copy(deep=True)
        scan_cfg.input.source = str(work / "world" / "segmentation" / "index.parquet")
        scan_cfg.models = [scan_cfg.models[0].model_copy(update={"arch": config.segmenter.arch,
                                                                  "encoder": config.segmenter.encoder,
                                                                  "checkpoint": work / "base" / "base_seg.pt"})]
        scan_cfg.imgsz, scan_cfg.out_dir = config.segmenter.imgsz, work / "scan"
        if scan_cfg.tracking.tracking_uri is None:
            scan_cfg.tracking.tracking_uri = tracking_uri
        key = config_hash(scan_cfg) + steps["pretrain"]["key"]
        def scan_step() -> dict:
            summary = scan.run(scan_cfg)
            flagged = pd.read_parquet(scan_cfg.out_dir / "hard_negatives.parquet")
            index = pd.read_parquet(work / "world" / "segmentation" / "index.parquet")
            index["path"] = [str((work / "world" / "segmentation" / i).resolve()) for i in index["image"]]
            smudged = flagged.merge(index[["path", "smooth_artifact"]], on="path")["smooth_artifact"]
            return {**summary, "truth": {"flagged_with_smudge": int(smudged.sum()), "flagged": len(smudged)}}

        steps["scan"] = run_step("scan", scan_cfg.out_dir, key, config.reuse, scan_step)

        seg_build = config.build.model_copy(deep=True, update={"task": "segment", "out_dir": work / "dataset-seg"})
        seg_build.segment.index = work / "world" / "segmentation" / "index.parquet"
        seg_build.segment.hard_negatives = work / "scan" / "hard_negatives.parquet"
        seg_train = TrainConfig(task="segment", data=work / "dataset-seg", out_dir=work / "train-seg",
                                segment=config.segment_train.model_copy(deep=True), scaling=config.train.scaling,
                                tracking=train_cfg.tracking)
        seg_train.segment.imgsz = config.segmenter.imgsz
        for variant in seg_train.segment.variants.values():
            variant.checkpoint = work / "base" / "base_seg.pt"  # every variant fine-tunes the base model
            variant.arch, variant.encoder = config.segmenter.arch, config.segmenter.encoder

        def segment_step() -> dict:
            from engine.models.segmenter import SegmenterSpec, build_segmenter
            from engine.segment.base import heldout_scores

            built = build.run(seg_build)
            trained = train.run(seg_train)
            s = seg_train.segment
            scores = {}
            for name, model in trained["models"].items():
                net = build_segmenter(SegmenterSpec(arch=config.segmenter.arch, encoder=config.segmenter.encoder,
                                                    checkpoint=model["best_model"]))
                scores[name] = heldout_scores(net, work / "world", s.imgsz, s.threshold, s.min_fp_ratio)
            base = build_segmenter(SegmenterSpec(arch=config.segmenter.arch, encoder=config.segmenter.encoder,
                                                 checkpoint=work / "base" / "base_seg.pt"))
            return {"build": built, "train": trained,
                    "heldout": {"base": heldout_scores(base, work / "world", s.imgsz, s.threshold, s.min_fp_ratio),
                                **scores}}

        key = config_hash(seg_build) + config_hash(seg_train) + steps["scan"]["key"]
        steps["segment"] = run_step("segment", work / "train-seg", key, config.reuse, segment_step)

    result = {"work_dir": str(work), "tracking_uri": tracking_uri, "steps": steps, "rounds": rounds}
    result["final"] = final_figures(result)
    _log_final(tracking_uri, config, result["final"])
    return result


def _log_final(tracking_uri: str, config: DemoConfig, final: dict) -> None:
    """The final table's figures as one MLflow run of the `quarry-demo` experiment."""
    import mlflow

    from engine.tracking import mlflow_run

    metrics = {f"{task}.{model}.{key}": value for task in ("detection", "segmentation")
               for model, row in final.get(task, {}).items() for key, value in row.items() if value is not None}
    metrics.update({f"seconds.{step}": value for step, value in final["seconds"].items()})
    with mlflow_run(tracking_uri, "quarry-demo", f"demo-{time.strftime('%Y%m%d-%H%M%S')}", config.model_dump(mode="json"),
                    {"quarry.job": "demo", "quarry.promotion": final["promotion"]}):
        mlflow.log_metrics(metrics)
