"""`quarry demo` end to end at a tiny size: synth -> base detector and CLIP -> mining with the
demo's shipped gate in false-alarms mode -> flicker -> label -> review -> build; the report,
reuse of unchanged steps, and a rerun that redoes only the steps an override touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from engine.config import load_config
from engine.review.reviews import candidate_ids

pytestmark = pytest.mark.slow


def test_every_step_ran_and_reports(tiny_demo):
    config, result = tiny_demo
    work = Path(config.work_dir)
    steps = result["steps"]
    assert list(steps) == ["synth", "pretrain", "mine", "flicker", "edges", "label", "review", "build", "train", "tune", "evaluate",
                           "promote", "segmenter", "scan", "segment"]
    assert not any(s["reused"] for s in steps.values())
    report = (work / "demo_report.md").read_text()
    for heading in ("1. synth", "2. pretrain", "3. mine", "4. flicker", "5. label", "6. review", "7. build", "8. train",
                    "9. tune", "10. evaluate", "11. promote", "12. segmenter", "13. scan", "14. segment", "| fine-tuned |", "| unet_ft |",
                    "| work zone |", "| lookalike (no objects) |", "| trained |", "mlflow ui --backend-store-uri"):
        assert heading in report, heading
    assert (work / "mine" / "sheet" / "index.html").is_file() and (work / "dataset" / "data.yaml").is_file()
    accepted = steps["review"]["accepted"]
    assert accepted == steps["mine"]["candidates"]["candidates"], "the demo accepts every false-alarm candidate"
    assert steps["build"]["by_kind"].get("hard_negative", 0) > 0
    assert 0.0 <= steps["flicker"]["truth"]["share_not_real"] <= 1.0
    edges = pd.read_parquet(work / "mine-edges" / "candidates.parquet")
    assert steps["edges"]["inputs"]["total"] == 2 and set(edges["video_label"]) <= {"tp"}
    band = config.edges
    assert edges["fused_score"].between(band.band_low, band.band_high).all() and edges["gate_pass"].all()
    assert steps["edges"]["truth"]["frames"] == len(edges)
    answered = sorted(p.stem for p in (work / "mine-edges" / "labels").glob("*.txt"))
    assert answered == sorted(candidate_ids(edges)), "the world answers for every edge case"
    samples = pd.read_parquet(work / "dataset" / "samples.parquet")
    built = samples[samples["kind"] == "edge_case"]
    assert 0 < len(built) == steps["build"]["by_kind"]["edge_case"] and set(built["candidate_id"]) <= set(answered)
    assert "edge cases with labels from the world's ground truth" in report
    held = steps["train"]["heldout"]
    assert set(held) == {"base", "fine_tuned"} and held["base"] == steps["pretrain"]["heldout"]
    assert steps["segment"]["heldout"]["base"]["authentic_images"] == 8
    assert steps["segment"]["build"]["by_kind"].get("hard_negative", 0) == steps["scan"]["hard_negatives"]
    assert json.loads((work / "demo_summary.json").read_text())["steps"]["mine"]["mode"] == "false-alarms"
    assert (work / "mlflow.db").is_file(), "mining was tracked in the demo's MLflow store"


def test_the_final_table_has_stable_keys_in_the_summary_and_in_mlflow(tiny_demo):
    import mlflow

    from engine.demo.report import DETECTION_KEYS

    config, result = tiny_demo
    final = json.loads((Path(config.work_dir) / "demo_summary.json").read_text())["final"]
    assert set(final["detection"]) == {"base", "fine_tuned", "tuned", "round2"}
    assert all(set(row) == set(DETECTION_KEYS) for row in final["detection"].values())
    assert set(final["segmentation"]) == {"base", "unet_ft"}
    assert all(set(row) == {"fp_rate", "pixel_recall"} for row in final["segmentation"].values())
    round_steps = {f"round2.{name}" for name in ("synth", "mine", "label", "review", "build", "train", "evaluate", "promote")}
    assert set(final["seconds"]) == set(result["steps"]) | round_steps and final["promotion"] in {"promoted", "refused"}
    assert [row["round"] for row in final["rounds"]] == [1, 2]
    assert all(set(row) == {"round", "model", "decision", *DETECTION_KEYS} for row in final["rounds"])
    client = mlflow.tracking.MlflowClient(result["tracking_uri"])
    run = client.search_runs([client.get_experiment_by_name("quarry-demo").experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert run.data.metrics["detection.base.fp_rate"] == final["detection"]["base"]["fp_rate"]
    assert run.data.metrics["segmentation.unet_ft.pixel_recall"] == final["segmentation"]["unet_ft"]["pixel_recall"]
    assert run.data.metrics["detection.round2.fp_rate"] == final["detection"]["round2"]["fp_rate"]
    # the processor whose kernels computed the figures, in the summary, on the run and in the report
    assert final["machine"]["cores"] == os.cpu_count() and final["machine"]["torch_cpu_capability"]
    assert run.data.tags["quarry.machine.cpu"] == final["machine"]["cpu"]
    report = (Path(config.work_dir) / "demo_report.md").read_text()
    assert "## Held-out results" in report and "contact sheet:" in report
    assert f"computed on:   {final['machine']['cpu']}, {os.cpu_count()} cores" in report


def test_a_second_round_mines_fresh_videos_with_the_promoted_model_and_grows_the_set(tiny_demo):
    from mlflow.tracking import MlflowClient

    from engine.mining.identity import file_sha256

    config, result = tiny_demo
    work, later = Path(config.work_dir), result["rounds"][0]
    steps = later["steps"]
    champion = result["steps"]["promote"]
    in_service = champion["challenger_version"] if champion["decision"] == "promoted" else champion["champion_version"]
    assert later["round"] == 2 and later["champion"]["version"] == in_service
    first_videos = set(pd.read_parquet(work / "world" / "videos.parquet")["video_stem"])
    fresh = pd.read_parquet(work / "round2" / "world" / "videos.parquet")
    assert len(fresh) == 7 and all(stem.startswith("r2_") for stem in fresh["video_stem"])
    assert not first_videos & set(fresh["video_stem"])
    candidates = pd.read_parquet(work / "round2" / "mine" / "candidates.parquet")
    weights = next((work / "round2" / "models").rglob("*.pt"))
    assert set(candidates["detector_sha256"]) <= {file_sha256(weights)[:12]}, "mined with the model in service"
    assert steps["mine"]["inputs"]["processed"] == 7
    first, grown = (pd.read_parquet(work / d / "samples.parquet") for d in ("dataset", "round2/dataset"))
    kept = grown.set_index("name").loc[first["name"]]
    assert (kept["kind"].to_numpy() == first["kind"].to_numpy()).all(), "round 1's samples keep their kind"
    assert (kept["split"].to_numpy() == first["split"].to_numpy()).all()
    assert grown["name"].str.contains("r2_").any(), "the fresh videos' frames joined the set"
    version = steps["train"]["models"]["detector"]["registered"]["version"]
    client = MlflowClient(result["tracking_uri"])
    aliases = client.get_model_version("quarry-detector", str(version)).aliases
    decision = steps["promote"]["decision"]
    assert ("champion" in aliases) == (decision == "promoted") and "challenger" in aliases
    assert set(steps["evaluate"]["models"]) == {"champion", "round2"}
    report = (work / "demo_report.md").read_text()
    assert "## Round 2" in report and "| round | lookalike-frame FP rate" in report


def test_base_detector_loads_and_its_heldout_figures_are_recorded(tiny_demo):
    from ultralytics import YOLO

    config, result = tiny_demo
    pre = result["steps"]["pretrain"]
    model = YOLO(pre["weights"])
    assert list(model.names.values()) == ["cone", "barrel", "sign", "barrier"]
    stored = json.loads((Path(config.work_dir) / "base" / "metrics.json").read_text())
    assert stored == {k: v for k, v in pre["heldout"].items()}
    wz, la = stored["workzone"], stored["lookalike"]
    assert wz["images"] == 32 and la["images"] == 32
    assert wz["tp"] + wz["fn"] > 0 and 0 < wz["recall"] <= 1, "the base model finds some work-zone objects"
    assert la["fp_rate"] > 0, "trained without lookalikes, it fires on some of them"


def test_mining_uses_the_demo_gate_in_false_alarms_mode(tiny_demo):
    """The shipped demo gate (K=1, N=3 of W=5) and selection, not degenerate test settings."""
    config, result = tiny_demo
    mine = result["steps"]["mine"]
    assert (config.mine.gate.min_cue_kinds, config.mine.gate.min_frames, config.mine.gate.window_frames) == (1, 3, 5)
    io = mine["inputs"]
    assert io["total"] == 7 == io["processed"] + io["skipped_done"] + io["errored"] and io["errored"] == 0
    reasons = mine["reasons"]
    assert reasons["not_false_alarm_video"] > 0, "tp videos are never mined in false-alarms mode"
    assert reasons.get("selected", 0) > 0 and reasons.get("gate_failed", 0) > 0, reasons
    candidates = pd.read_parquet(Path(mine["out_dir"]) / "candidates.parquet")
    assert set(candidates.video_label) <= {"fp", "clean"}
    assert (candidates.yolo_score >= config.mine.selection.fire_threshold).all() and candidates.gate_pass.all()
    assert (candidates.groupby("video_key").size() <= config.mine.selection.quota_per_video).all()
    for key, group in candidates.groupby("video_key"):  # the gap between candidates, in video frames
        frames = sorted(group.frame)
        assert all(b - a >= config.mine.selection.min_gap_frames for a, b in zip(frames, frames[1:])), key


def test_each_task_runs_only_its_own_steps_and_reuses_what_task_all_made(tiny_demo):
    """`task=segment` is the segmentation branch alone on the same world and `task=detect` the
    detection loop alone; after `task=all` in the same work dir both reuse every step."""
    from conftest import TINY_DEMO_OVERRIDES

    from jobs import demo

    config, first = tiny_demo
    work = Path(config.work_dir)
    alone = demo.run(load_config(demo.DemoConfig, None, [f"work_dir={work}", *TINY_DEMO_OVERRIDES,
                                                        "task=segment", "rounds=1"]))
    assert list(alone["steps"]) == ["synth", "segmenter", "scan", "segment"] and alone["rounds"] == []
    assert all(step["reused"] for step in alone["steps"].values())
    final = alone["final"]
    assert final["segmentation"] == first["final"]["segmentation"]
    assert "detection" not in final and "promotion" not in final
    assert json.loads((work / "demo_summary-segment.json").read_text())["final"]["segmentation"] == final["segmentation"]
    report = (work / "demo_report-segment.md").read_text()
    for heading in ("1. synth", "2. segmenter", "3. scan", "4. segment", "| segmenter | FP rate on authentic images",
                    "hard negatives (segmentation):", "mlflow ui --backend-store-uri"):
        assert heading in report, heading
    assert "pretrain" not in report and "contact sheet" not in report
    detect = demo.run(load_config(demo.DemoConfig, None, [f"work_dir={work}", *TINY_DEMO_OVERRIDES, "task=detect"]))
    assert list(detect["steps"]) == list(first["steps"])[:-3], "no segmentation step"
    assert all(step["reused"] for step in detect["steps"].values())
    assert "segmentation" not in detect["final"] and detect["final"]["detection"] == first["final"]["detection"]
    hint = f"segmentation:  quarry demo --config {work}/config.resolved.yaml task=segment"
    assert hint in (work / "demo_report.md").read_text(), "the detection loop says how to run the other branch"


def test_a_rerun_reuses_unchanged_steps_and_redoes_what_an_override_touched(tiny_demo):
    from conftest import TINY_DEMO_OVERRIDES

    from jobs import demo

    config, first = tiny_demo
    again = demo.run(config)
    assert all(step["reused"] for step in again["steps"].values())
    assert all(step["reused"] for step in again["rounds"][0]["steps"].values())
    assert again["steps"]["mine"]["candidates"] == first["steps"]["mine"]["candidates"]
    changed = load_config(demo.DemoConfig, None, [f"work_dir={config.work_dir}", *TINY_DEMO_OVERRIDES,
                                                  "scan.min_area_px=5"])
    assert changed.mine.selection.mode == "false-alarms", "the override kept the demo's mining mode"
    result = demo.run(changed)
    redone = {name for name, step in result["steps"].items() if not step["reused"]}
    assert redone == {"scan", "segment"}, "the override redoes the scan and what depends on it, nothing else"
    assert result["steps"]["scan"]["flagged"] <= first["steps"]["scan"]["flagged"]
    # (the work dir keeps this run's scan and segmentation outputs: no later test reads them)


@pytest.mark.reliability("security")
def test_jobs_run_in_one_block_share_one_local_ray_that_stops_after_it(tmp_path):
    import ray

    from engine.raycluster import RayConfig, one_ray_for_all, ray_session

    assert not ray.is_initialized()
    with one_ray_for_all():
        with ray_session(RayConfig(num_cpus=1)):
            first = ray.get_runtime_context().get_job_id()
            dashboard = ray._private.worker._global_node.webui_url  # on: Tune needs its state API
            assert dashboard and dashboard.split(":")[0] == "127.0.0.1", "the dashboard listens on loopback only"
        assert ray.is_initialized(), "kept for the next job"
        with ray_session(RayConfig(num_cpus=1)):
            assert ray.get_runtime_context().get_job_id() == first, "joined, not started again"
    assert not ray.is_initialized(), "stopped when the block ended"
    with ray_session(RayConfig(num_cpus=1)):
        assert ray.is_initialized()
    assert not ray.is_initialized(), "outside the block a job stops the Ray it started"


def test_the_review_steps_key_follows_the_clip_checkpoint_and_the_categories(tmp_path):
    """Both rounds key their review step on the review job's resolved config, so a new CLIP
    checkpoint or new categories redo it (round 2 once keyed on the categories alone)."""
    from engine.demo.config import DemoConfig
    from engine.demo.steps import review_key

    config = DemoConfig()
    plain = review_key(config, [])
    assert review_key(config, []) == plain
    assert review_key(config, [f"categorise.clip.checkpoint={tmp_path / 'clip.pt'}"]) != plain
    other = config.model_copy(update={"categories": {**config.categories, "tractor": "a photo of a tractor"}})
    assert review_key(other, []) != plain


def test_the_final_table_says_when_the_tuned_model_is_the_fine_tuned_one():
    from engine.demo.report import DETECTION_KEYS, final_lines

    figures = dict.fromkeys(DETECTION_KEYS, 0.5)
    result = {"final": {"detection": {"base": figures, "fine_tuned": figures, "tuned": figures},
                        "rounds": [{"round": 1, "decision": "promoted", **figures}], "promotion": "promoted",
                        "seconds": {"train": 1.0},
                        "machine": {"cpu": "cpu", "cores": 2, "torch": "2", "torch_cpu_capability": "AVX2"}},
              "steps": {"evaluate": {"report": "report.html", "models": {"base": {}, "fine_tuned": {},
                                                                         "tuned": {"same_weights_as": "fine_tuned"}}},
                        "review": {"sheet": "sheet/index.html"}, "synth": {"segmentation_images": {"authentic": 0}}},
              "tracking_uri": "sqlite:////work/mlflow.db"}
    rows = [line.split(" | ")[0] for line in final_lines(result) if line.startswith("| ") and "0.500" in line]
    assert rows == ["| base", "| fine-tuned", "| tuned (= fine-tuned: the same weights)"]


def test_without_a_trained_clip_the_review_categorises_nothing_and_says_so(tiny_demo, tmp_path):
    """The quick profile trains no CLIP; a random CLIP's zero-shot categories were reported as if
    they meant something ("right for 30 %")."""
    import shutil

    from engine.demo.report import format_report
    from engine.demo.steps import review_step

    config, result = tiny_demo
    mined = tmp_path / "mine"
    shutil.copytree(Path(config.work_dir) / "mine", mined, ignore=shutil.ignore_patterns("sheet", "reviews.jsonl"))
    manifest = mined / "candidates.parquet"  # its snapshot paths are relative to its folder
    candidates = pd.read_parquet(manifest)
    review = review_step(config, manifest, [])
    assert review["categorised"] == {} and review["category_accuracy"] is None
    assert review["accepted"] == len(candidates) > 0
    answers = [json.loads(line) for line in (mined / "reviews.jsonl").read_text().splitlines()]
    assert answers and {a["field"] for a in answers} == {"decision"}
    report = format_report({**result, "steps": {**result["steps"], "review": {**review, "step_seconds": 1.0, "reused": False}}})
    assert "6. review [1 s]: not categorised (no CLIP trained: clip.enabled=false); " in report
