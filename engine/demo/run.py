"""The demo's steps, each reused when its config and inputs are unchanged since the last run
in the same work dir (the report says so). `task=detect` (the default) runs steps 1-11,
`task=segment` steps 1 and 12-14, `task=all` every step:

  1. synth      the world: videos with ground truth, still-image sets, captioned frames
  2. pretrain   the base detector (Ultralytics' trainer) and a tiny CLIP, scored on held-out frames
  3. mine       false-alarm mining: frames of fp/clean videos where the base model would alarm
  4. flicker    flicker mining on every video, scored against the world's ground truth
     edges      edge-case mining (seed 000's fused-score band) on the work-zone (tp) videos, the
                frames a labeller should look at; scored against the world's ground truth
  5. label      pseudo-labels for the videos' frames, false-alarm boxes dropped by rule
  6. review     the mined candidates categorised by CLIP zero-shot (when a CLIP was trained) and
                sheeted; accepted as hard negatives (they come from videos labelled false alarms)
  7. build      the training set: base data + labelled frames + accepted hard negatives + the edge
                cases, labelled by the world's ground truth (the demo's stand-in for a labeller)
  8. train      fine-tune the base detector on 2 Ray Train workers; base vs fine-tuned on held-out frames
  9. tune       a few short Ray Tune trials over the FP penalty, lr and the hard-negative weight;
                the best is registered as quarry-detector@challenger
 10. evaluate   base vs fine-tuned vs tuned on held-out frames and videos (events through the gate)
 11. promote    the base model is @champion unless one exists; the challenger replaces it only
                when the promotion gate holds
 12. segmenter the base segmentation model, trained plainly (pretrain with the segmenter alone)
 13. scan       the base segmenter over the authentic training images: hard negatives
 14. segment    build the segmentation set (forged + zero-mask hard negatives) and fine-tune
                with seed 003's loss; base vs fine-tuned FP rate on held-out authentic images

With `rounds=N`, rounds 2..N follow step 11 (engine/demo/rounds.py): fresh videos are mined and labelled
with the promoted model, their hard negatives join the previous round's set, the promoted model
is fine-tuned on it and must pass the same gate against itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from engine.config import config_hash, write_resolved_config
from engine.demo.config import DemoConfig
from engine.demo.report import final_figures
from engine.demo.rounds import later_round
from engine.demo.steps import (
    build_config,
    evaluate_config,
    evaluation_step,
    label_config,
    label_edge_cases,
    mining_config,
    promotion_step,
    review_key,
    review_step,
    run_step,
    train_config,
)
from engine.evaluate.config import ModelRef
from engine.evaluate.world_truth import edge_truth_report, flicker_truth_report, load_truth
from engine.machine import describe_machine
from engine.mining.config import MineConfig
from engine.registry.promote import PromoteConfig
from engine.segment.base import BaseSegmenterConfig
from engine.storage import write_table
from engine.synth.config import SynthConfig
from engine.train.base_detector import BaseTrainingConfig
from engine.train.clip_pretrain import ClipTrainingConfig
from engine.train.config import TrainConfig
from engine.tune.run import search_hash, stored_search_hash


def run_demo(config: DemoConfig) -> dict:
    from engine.raycluster import one_ray_for_all

    with one_ray_for_all():
        return _run_steps(config)


def _run_steps(config: DemoConfig) -> dict:
    from jobs import synth

    work = Path(config.work_dir)
    write_resolved_config(config, work)
    tracking_uri = f"sqlite:///{work.resolve() / 'mlflow.db'}"
    steps: dict[str, dict] = {}

    synth_cfg = SynthConfig(out_dir=work / "world", seed=config.seed, videos=config.videos,
                            heldout_videos=config.heldout_videos, detection=config.detection,
                            segmentation=config.segmentation, captions=config.captions)
    steps["synth"] = run_step("synth", synth_cfg.out_dir, config_hash(synth_cfg), config.reuse, lambda: synth.run(synth_cfg))
    rounds = _detection_steps(config, steps, tracking_uri) if config.task in ("detect", "all") else []
    if config.task in ("segment", "all"):
        _segmentation_steps(config, steps, tracking_uri)
    result = {"work_dir": str(work), "tracking_uri": tracking_uri, "steps": steps, "rounds": rounds,
              "machine": describe_machine()}
    result["final"] = final_figures(result)
    _log_final(tracking_uri, config, result["final"])
    return result


def _detection_steps(config: DemoConfig, steps: dict, tracking_uri: str) -> list[dict]:
    """Steps 2-11 (and later rounds) into `steps`; returns the later rounds."""
    from jobs import build, label, mine, pretrain, train, tune

    work = Path(config.work_dir)
    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base", evaluation=config.evaluation,
                                      training=config.base_model, clip=config.clip,
                                      segmenter=BaseSegmenterConfig(enabled=False))
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
    steps["review"] = run_step("review", work / "mine" / "sheet", review_key(config, clip_override) + steps["mine"]["key"],
                               config.reuse, lambda: review_step(config, manifest, clip_override))

    edge_cases = work / "mine-edges" / "candidates.parquet" if config.label_edges else None
    build_cfg = build_config(config, work / "world" / "detection" / "data.yaml", work / "label" / "labels.parquet",
                             manifest, work / "dataset", clip_checkpoint, edge_cases)
    key = config_hash(build_cfg) + steps["label"]["key"] + steps["review"]["key"]
    if edge_cases is not None:
        key += steps["edges"]["key"]

    def build_step() -> dict:
        if edge_cases is not None:
            label_edge_cases(edge_cases, work / "world", edge_cases.parent / "labels")
        return build.run(build_cfg)

    steps["build"] = run_step("build", build_cfg.out_dir, key, config.reuse, build_step)

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

    rounds = []
    for r in range(2, config.rounds + 1):
        previous = rounds[-1]["steps"]["promote"] if rounds else steps["promote"]
        previous_set = work / "dataset" if r == 2 else work / f"round{r - 1}" / "dataset"
        rounds.append(later_round(config, r, previous, previous_set, clip_checkpoint, clip_override, promote_cfg,
                                  tracking_uri))

    return rounds


def _segmentation_steps(config: DemoConfig, steps: dict, tracking_uri: str) -> None:
    """Steps 12-14 into `steps`: the base segmenter, the scan, and the segmentation fine-tune."""
    from jobs import build, pretrain, scan, train

    work = Path(config.work_dir)
    pre_cfg = pretrain.PretrainConfig(world_dir=work / "world", out_dir=work / "base-seg", segmenter=config.segmenter,
                                      training=BaseTrainingConfig(enabled=False), clip=ClipTrainingConfig(enabled=False))
    pre_cfg.tracking.tracking_uri = tracking_uri
    key = config_hash(pre_cfg) + steps["synth"]["key"]
    steps["segmenter"] = run_step("segmenter", pre_cfg.out_dir, key, config.reuse, lambda: pretrain.run(pre_cfg))
    base_seg = pre_cfg.out_dir / "base_seg.pt"
    tracking = config.train.tracking.model_copy()
    tracking.tracking_uri = tracking.tracking_uri or tracking_uri
    scan_cfg = config.scan.model_copy(deep=True)
    scan_cfg.input.source = str(work / "world" / "segmentation" / "index.parquet")
    scan_cfg.models = [scan_cfg.models[0].model_copy(update={"arch": config.segmenter.arch,
                                                              "encoder": config.segmenter.encoder,
                                                              "checkpoint": base_seg})]
    scan_cfg.imgsz, scan_cfg.out_dir = config.segmenter.imgsz, work / "scan"
    if scan_cfg.tracking.tracking_uri is None:
        scan_cfg.tracking.tracking_uri = tracking_uri
    key = config_hash(scan_cfg) + steps["segmenter"]["key"]

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
                            tracking=tracking)
    seg_train.segment.imgsz = config.segmenter.imgsz
    for variant in seg_train.segment.variants.values():
        variant.checkpoint = base_seg  # every variant fine-tunes the base model
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
                                             checkpoint=base_seg))
        return {"build": built, "train": trained,
                "heldout": {"base": heldout_scores(base, work / "world", s.imgsz, s.threshold, s.min_fp_ratio),
                            **scores}}

    key = config_hash(seg_build) + config_hash(seg_train) + steps["scan"]["key"]
    steps["segment"] = run_step("segment", work / "train-seg", key, config.reuse, segment_step)


def _log_final(tracking_uri: str, config: DemoConfig, final: dict) -> None:
    """The final table's figures as one MLflow run of the `quarry-demo` experiment."""
    import mlflow

    from engine.tracking import mlflow_run

    metrics = {f"{task}.{model}.{key}": value for task in ("detection", "segmentation")
               for model, row in final.get(task, {}).items() for key, value in row.items() if value is not None}
    metrics.update({f"seconds.{step}": value for step, value in final["seconds"].items()})
    with mlflow_run(tracking_uri, "quarry-demo", f"demo-{time.strftime('%Y%m%d-%H%M%S')}", config.model_dump(mode="json"),
                    {"quarry.job": "demo", "quarry.task": config.task,
                     **({"quarry.promotion": final["promotion"]} if "promotion" in final else {}),
                     **{f"quarry.machine.{k}": str(v) for k, v in final["machine"].items()}}):
        mlflow.log_metrics(metrics)
