"""Tune, evaluate and promote on the tiny demo's registry: the 2-trial search and its MLflow
runs, resuming it, the evaluation report in Chromium, the promotion gate rule by rule, a
refusal, a re-run, and a fresh process loading the champion."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.config import ConfigError, load_config
from engine.registry.promote import GateConfig, judge
from engine.tune.config import TuneConfig, train_values

pytestmark = pytest.mark.usefixtures("one_ray")

CHAMPION = {"event_recall": 1.0, "fp_rate": 0.5, "map50": 0.60}


def test_the_gate_passes_when_every_rule_holds():
    rules = judge(GateConfig(fp_margin=0.2), {"event_recall": 0.96, "fp_rate": 0.3, "map50": 0.595}, CHAMPION)
    assert [r["rule"] for r in rules] == ["recall", "fp", "map"] and all(r["passed"] for r in rules)


def test_the_first_promotion_says_there_was_no_champion_and_which_rule_applied():
    """It printed "champion was None"."""
    from jobs.promote import format_summary

    first = {"model": "quarry-detector", "decision": "promoted", "challenger_version": 2, "champion_version": None,
             "rules": judge(GateConfig(), {"event_recall": 0.96, "fp_rate": 0.3, "map50": 0.5}, None)}
    assert format_summary(first).splitlines()[:2] == [
        "# quarry-detector: promoted (challenger version 2, no champion before: only the recall rule applies)",
        "- pass recall: event_recall 0.9600 >= 0.95"]
    assert "champion was version 1)" in format_summary({**first, "decision": "refused", "champion_version": 1})


@pytest.mark.parametrize("challenger, failing", [
    ({"event_recall": 0.94, "fp_rate": 0.1, "map50": 0.7}, "recall"),
    ({"event_recall": 1.0, "fp_rate": 0.5, "map50": 0.7}, "fp"),   # equal is not lower
    ({"event_recall": 1.0, "fp_rate": 0.45, "map50": 0.7}, "fp"),  # lower, but not by the 20 % margin
    ({"event_recall": 1.0, "fp_rate": 0.1, "map50": 0.58}, "map"),  # more than 0.01 below
])
@pytest.mark.reliability("refusal")
def test_the_gate_fails_each_rule_alone(challenger, failing):
    rules = judge(GateConfig(fp_margin=0.2), challenger, CHAMPION)
    assert [r["rule"] for r in rules if not r["passed"]] == [failing]


@pytest.mark.reliability("refusal")
def test_without_a_champion_only_recall_is_judged():
    assert [r["rule"] for r in judge(GateConfig(), {"event_recall": 0.97}, None)] == ["recall"]
    assert not judge(GateConfig(), {"event_recall": 0.9}, None)[0]["passed"]


@pytest.mark.reliability("bad config")
def test_a_gate_metric_that_was_not_evaluated_is_a_config_error():
    with pytest.raises(ConfigError, match="event_recall"):
        judge(GateConfig(), {"frame_recall": 1.0}, None)


@pytest.mark.reliability("bad config")
def test_a_gate_metric_that_evaluate_never_reports_is_refused_before_the_evaluation():
    """`gate.recall_metric=recal` failed only after the held-out evaluation had run."""
    from engine.evaluate.run import HEADLINE_METRICS, headline
    from engine.registry.promote import PromoteConfig

    with pytest.raises(ConfigError, match=r"gate.recall_metric = 'recal': not a metric `quarry evaluate` reports \(one of "):
        load_config(PromoteConfig, None, ["gate.recall_metric=recal"])
    for metric in ("frame_recall", "false_alarms_per_video", "pixel_recall"):
        assert load_config(PromoteConfig, None, [f"gate.fp_metric={metric}"]).gate.fp_metric == metric
    every = {"frames": {"frames": dict.fromkeys(("precision", "recall", "f1", "mcc", "fp_rate"), 0.5),
                        "objects": dict.fromkeys(("recall", "map50", "map50_95"), 0.5), "calibration": {}},
             "events": dict.fromkeys(("event_recall", "false_alarms_per_video", "false_alarms_per_hour"), 0.5),
             "segmentation": {"pixels": dict.fromkeys(("precision", "recall", "f1", "fp_rate"), 0.5)}}
    assert set(headline(every)) == set(HEADLINE_METRICS)


def test_the_objective_adds_the_recall_shortfall_and_subtracts_the_tiebreak():
    from engine.tune.objective import ObjectiveConfig, objective

    metrics = {"val_hn_fp_rate": 0.2, "val_frame_recall": 0.90, "val_map50": 0.6}
    assert objective(metrics, ObjectiveConfig()) == pytest.approx(0.2 + 2.0 * 0.05 - 0.1 * 0.6)
    assert objective({**metrics, "val_frame_recall": 0.97}, ObjectiveConfig()) == pytest.approx(0.2 - 0.06)
    assert objective(metrics, ObjectiveConfig(metric="val_map50", mode="max", constraint_metric=None,
                                              tiebreak_metric=None)) == 0.6
    with pytest.raises(KeyError, match="val_recal"):
        objective(metrics, ObjectiveConfig(constraint_metric="val_recal"))


@pytest.mark.reliability("bad config")
def test_a_search_space_key_outside_the_training_config_is_rejected():
    with pytest.raises(ConfigError, match="detect.fp_penalti"):
        load_config(TuneConfig, None, ["space=[{key: detect.fp_penalti, kind: uniform, low: 0, high: 1}]"])
    with pytest.raises(ConfigError, match="low < high"):
        load_config(TuneConfig, None, ["space=[{key: detect.lr, kind: loguniform, low: 0.1, high: 0.01}]"])
    ok = load_config(TuneConfig, None, ["space=[{key: reweight.category.orange_trucks, kind: uniform, low: 1, high: 3}]"])
    assert [p.key for p in ok.space] == ["reweight.category.orange_trucks"]
    assert train_values(ok) == {"reweight.category.orange_trucks": 1.0}, "a weight no rule names is 1"
    assert train_values(load_config(TuneConfig)) == {"detect.fp_penalty": 1.0, "detect.lr": 0.001,
                                                     "reweight.kind.hard_negative": 2.0}


@pytest.mark.reliability("bad config")
def test_a_misspelt_sample_kind_is_refused_in_the_build_and_in_the_search_space():
    """`weights.kind.hard_negatve=5` left the hard negatives at their default weight; as a searched
    key, every trial failed at its start."""
    from engine.build.config import BuildConfig

    with pytest.raises(ConfigError, match=r"weights.kind: \['hard_negatve'\] not a sample kind \(the kinds: positive, "):
        load_config(BuildConfig, None, ["weights.kind.hard_negatve=5"])
    with pytest.raises(ConfigError, match=r"space: a trial's train.reweight.kind would be refused: \['hard_negatve'\] not"):
        load_config(TuneConfig, None, ["space=[{key: reweight.kind.hard_negatve, kind: uniform, low: 1, high: 3}]"])
    with pytest.raises(ConfigError, match=r"space: a trial's train.detect.epochs = 0.0 would be refused: .*greater than"):
        load_config(TuneConfig, None, ["space=[{key: detect.epochs, kind: randint, low: 0, high: 3}]"])



@pytest.mark.reliability("bad config")
def test_an_objective_names_only_metrics_an_epoch_reports(tiny_demo):
    """`train.objective.metric=val_fp_rat` failed in every trial's workers (a KeyError, retried
    max_failures times: 4 min on 2 cores) and the search ended "no trial reported an objective"."""
    from engine.train.config import DETECT_EPOCH_METRICS, TrainConfig

    _, result = tiny_demo
    history = result["steps"]["train"]["models"]["detector"]["history"]
    assert set(history[0]) - {"fitness"} == set(DETECT_EPOCH_METRICS)
    with pytest.raises(ConfigError, match=r"train: objective.metric = 'val_fp_rat': not a metric an epoch reports \(one of"):
        load_config(TuneConfig, None, ["train.objective.metric=val_fp_rat"])
    with pytest.raises(ConfigError, match=r"objective.tiebreak_metric = 'map50': not a metric"):
        load_config(TrainConfig, None, ["objective={tiebreak_metric: map50}"])
    with pytest.raises(ConfigError, match=r"objective: only detection training reports one \(task=detect\)"):
        load_config(TrainConfig, None, ["task=segment", "objective={}"])


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def test_the_demo_search_ran_two_trials_as_child_runs_and_registered_a_challenger(tiny_demo):
    config, result = tiny_demo
    tune, uri = result["steps"]["tune"], result["tracking_uri"]
    assert len(tune["trials"]) == 2 and all(t["best_objective"] is not None for t in tune["trials"])
    first, second = sorted(tune["trials"], key=lambda t: t["trial"])
    assert first["config"] == pytest.approx(train_values(config.tune)), "the search starts from the unsearched config"
    assert second["config"] != first["config"]
    client = _client(uri)
    parent = json.loads((Path(tune["out_dir"]) / "search.json").read_text())["parent_run_id"]
    experiment = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.data.tags["quarry.trial"] for r in children) == sorted(t["trial"] for t in tune["trials"])
    assert all(r.info.status == "FINISHED" and "objective" in r.data.metrics for r in children)
    version = client.get_model_version("quarry-detector", str(tune["registered"]["version"]))
    assert "challenger" in version.aliases or result["rounds"], "later rounds move the alias to their own model"
    assert version.tags["quarry.best_trial"] == tune["best"]["trial"]


@pytest.mark.reliability("resume")
def test_a_finished_search_resumes_without_training_or_registering_again(tiny_demo):
    from engine.tune.run import run_tuning

    config, result = tiny_demo
    tune = result["steps"]["tune"]
    cfg = config.tune.model_copy(deep=True)
    cfg.train.data, cfg.out_dir = Path(config.work_dir) / "dataset", Path(tune["out_dir"])
    cfg.train.detect.model = str(Path(config.work_dir) / "base" / "base.pt")
    cfg.tracking.tracking_uri = result["tracking_uri"]
    again = run_tuning(cfg)
    assert again["resumed"] and again["best"] == tune["best"]
    assert again["registered"]["version"] == tune["registered"]["version"]


def test_the_evaluation_report_renders_in_chromium_with_every_plot(tiny_demo):
    from conftest import chromium_page

    _, result = tiny_demo
    evaluation = result["steps"]["evaluate"]
    assert set(evaluation["models"]) == {"base", "fine_tuned", "tuned"}
    report = Path(evaluation["report"])
    numbers = json.loads((report.parent / "report.json").read_text())
    assert set(numbers["models"]) == {"base", "fine_tuned", "tuned"}
    with chromium_page(report.as_uri()) as (page, errors):
        page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        broken = page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.src)")
        n_images = page.evaluate("document.images.length")
        text = page.inner_text("body")
    assert errors == [] and broken == [], (errors, broken)
    assert n_images >= 6
    for heading in ("precision", "recall", "MCC", "ECE", "event recall"):
        assert heading.lower() in text.lower()


def test_a_model_with_the_weights_of_another_is_scored_once(tiny_demo, tmp_path):
    """A checkpoint that differs from another only beside its weights (here an extra key; in the
    demo the tuned model when the search's best trial is the fine-tune's own settings) gets the
    other's figures without being scored again: no events of its own are mined."""
    import torch

    from engine.demo.steps import evaluate_config
    from engine.evaluate.config import ModelRef
    from engine.evaluate.run import headline, run_evaluation
    from engine.mining.identity import file_sha256
    from engine.models.detector import build_detector, weights_digest

    config, result = tiny_demo
    work = Path(config.work_dir)
    base = work / "base" / "base.pt"
    checkpoint = torch.load(base, map_location="cpu", weights_only=False)
    copy = tmp_path / "copy.pt"
    torch.save({**checkpoint, "quarry_note": "the same weights, another file"}, copy)
    assert file_sha256(copy) != file_sha256(base)
    clip = work / "base" / "clip.pt"
    cfg = evaluate_config(config, tmp_path / "evaluate", clip if clip.is_file() else None, result["tracking_uri"],
                          [ModelRef(name="base", source=str(base)), ModelRef(name="copy", source=str(copy)),
                           ModelRef(name="fine_tuned", source=result["steps"]["train"]["models"]["detector"]["best_model"])])
    cfg.tracking.enabled = False
    models = run_evaluation(cfg)["models"]
    assert models["copy"]["same_weights_as"] == "base" and "same_weights_as" not in models["fine_tuned"]
    assert headline(models["copy"]) == headline(models["base"]) != headline(models["fine_tuned"])
    assert models["copy"]["source"] == str(copy)
    assert "(the weights of base)" in (tmp_path / "evaluate" / "report.html").read_text()
    # the events are kept per weights digest, with the file they were mined with
    folder = work / "events" / weights_digest(build_detector(str(base)).model)[:16]
    assert file_sha256(folder / "detector.pt") == file_sha256(base)
    # mined without CLIP, which only ranks candidates: the events are the gate's (tests/test_mining_pure.py)
    assert yaml.safe_load((folder / "config.resolved.yaml").read_text())["scoring"]["use_clip"] is False
    timelines = {p: p.stat().st_mtime_ns for p in (folder / "timelines").glob("*.parquet")}
    assert timelines
    # a later evaluation of the copy alone (as `quarry promote` scores a challenger) finds them done
    cfg.models = [ModelRef(name="copy", source=str(copy))]
    again = run_evaluation(cfg)["models"]["copy"]
    assert "same_weights_as" not in again and headline(again) == headline(models["base"])
    assert {p: p.stat().st_mtime_ns for p in (folder / "timelines").glob("*.parquet")} == timelines


def test_quarry_evaluate_logs_one_mlflow_run_with_its_report_and_plots(tiny_demo, tmp_path):
    """`quarry evaluate` logged its run twice: in the registry's store and again in a second
    SQLite store inside its out_dir."""
    from engine.demo.steps import evaluate_config
    from engine.evaluate.config import ModelRef
    from jobs import evaluate

    config, result = tiny_demo
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = Path(config.work_dir) / "base" / "base.pt"
    cfg = evaluate_config(config, tmp_path / "evaluate", None, uri, [ModelRef(name="base", source=str(base))])
    summary = evaluate.run(cfg)
    client = _client(uri)
    runs = client.search_runs([client.get_experiment_by_name("quarry-evaluate").experiment_id])
    assert [r.info.run_id for r in runs] == [summary["mlflow_run_id"]]
    assert runs[0].data.metrics["base.fp_rate"] == summary["models"]["base"]["frames"]["frames"]["fp_rate"]
    logged = {a.path for a in client.list_artifacts(summary["mlflow_run_id"])}
    assert {"report.html", "report.json", "pr_curves.png", "confusion.png"} <= logged
    assert not list((tmp_path / "evaluate").rglob("mlflow.db"))


def test_promotion_decision_is_tagged_and_a_fresh_process_loads_the_champion(tiny_demo):
    config, result = tiny_demo
    promotion, uri = result["steps"]["promote"], result["tracking_uri"]
    client = _client(uri)
    challenger = client.get_model_version("quarry-detector", str(promotion["challenger_version"]))
    assert challenger.tags["quarry.promotion.decision"] == promotion["decision"]
    assert {f"quarry.promotion.rule.{r['rule']}" for r in promotion["rules"]} <= set(challenger.tags)
    champion = client.get_model_version_by_alias("quarry-detector", "champion")
    expected = promotion["challenger_version"] if promotion["decision"] == "promoted" else promotion["champion_version"]
    assert int(champion.version) == expected
    image = sorted((Path(config.work_dir) / "world" / "heldout" / "workzone" / "images").glob("*.jpg"))[0]
    code = (f"import mlflow; mlflow.set_tracking_uri({uri!r}); "
            "m = mlflow.pyfunc.load_model('models:/quarry-detector@champion'); "
            f"print(len(m.predict([{str(image)!r}])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip().splitlines()[-1]) >= 0


@pytest.mark.reliability("refusal")
def test_a_copy_of_the_champion_as_challenger_is_refused_and_a_rerun_changes_nothing(tiny_demo, tmp_path, capsys):
    from engine.registry.models import register_as
    from engine.registry.resolve import weights_of
    from jobs import promote

    config, result = tiny_demo
    uri, work = result["tracking_uri"], Path(config.work_dir)
    client = _client(uri)
    champion = client.get_model_version_by_alias("quarry-detector", "champion")
    same = weights_of(uri, champion, tmp_path / "cache")
    register_as(uri, "quarry-promote", "detector", same, "quarry-detector", "challenger", {"quarry.role": "test copy"})
    args = [f"tracking.tracking_uri={uri}", f"out_dir={tmp_path / 'promote'}", f"evaluation.world={work / 'world'}",
            f"evaluation.events_dir={work / 'events'}"]
    assert promote.main(args) == 3
    err = capsys.readouterr().err
    assert "not promoted" in err and "fp:" in err, err
    assert client.get_model_version_by_alias("quarry-detector", "champion").version == champion.version
    assert promote.main(args) == 3, "re-running a refusal refuses again and moves nothing"
    assert client.get_model_version_by_alias("quarry-detector", "champion").version == champion.version


def test_the_model_in_service_is_the_one_the_decision_left():
    from engine.demo.rounds import in_service

    versions = {"challenger_version": 4, "champion_version": 2}
    assert in_service({"decision": "promoted", **versions}) == 4
    assert in_service({"decision": "already_champion", **versions}) == 4
    assert in_service({"decision": "refused", **versions}) == 2
