"""Rounds 2..N of the demo (seed 000's phase 4, "expand the hard-negative set, repeat")."""

from __future__ import annotations

from pathlib import Path

from engine.config import config_hash
from engine.demo.config import DemoConfig
from engine.demo.steps import (
    build_config,
    evaluate_config,
    evaluation_step,
    label_config,
    mining_config,
    promotion_step,
    review_key,
    review_step,
    run_step,
    train_config,
)
from engine.evaluate.config import ModelRef
from engine.registry.promote import PromoteConfig
from engine.synth.config import SynthConfig


def in_service(promotion: dict) -> int:
    """The registry version in service after a promote step's decision."""
    if promotion["decision"] in ("promoted", "already_champion"):
        return promotion["challenger_version"]
    return promotion["champion_version"]


def later_round(config: DemoConfig, r: int, previous: dict, previous_set: Path, clip: Path | None,
                clip_override: list[str], promote_cfg: PromoteConfig, tracking_uri: str) -> dict:
    """Round r >= 2 (seed 000's phase 4, "expand the hard-negative set, repeat"): fresh videos
    mined and labelled with the model the previous round left in service; their hard negatives
    join the previous round's set; that model is fine-tuned on it, registered @challenger,
    judged against the champion on the same held-out data and promoted by the same gate."""
    from mlflow.tracking import MlflowClient

    from engine.mining.identity import file_sha256
    from engine.registry.resolve import resolve_model
    from engine.synth.world import generate_round_videos
    from jobs import build, label, mine, train

    work, root, name = Path(config.work_dir), Path(config.work_dir) / f"round{r}", promote_cfg.model_name
    # the model the previous round left in service (not the alias now: a rerun must find the same)
    champion, info = resolve_model(f"models:/{name}/{in_service(previous)}", tracking_uri, root / "models")
    upstream = previous["key"] + file_sha256(champion)
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
    steps["review"] = run_step(f"round{r}.review", root / "mine" / "sheet", review_key(config, clip_override) + steps["mine"]["key"],
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
