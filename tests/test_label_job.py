"""`quarry label` on a local Ray with the tiny demo's trained detector: video frames, a mining
candidates manifest with missing and unreadable images, an image folder; label files that
match the decisions; the rules against ground truth; reruns that skip what is done."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.config import load_config
from engine.labels.config import LabelConfig
from engine.yolo_format import parse_yolo_labels
from jobs import label

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray")]


def _config(tiny_demo, out, *overrides):
    config, _ = tiny_demo
    work = Path(config.work_dir)
    return load_config(LabelConfig, None, [
        f"input.source={work / 'world' / 'videos.parquet'}", f"detector.source={work / 'base' / 'base.pt'}",
        f"output.out_dir={out}", f"ground_truth={work / 'world'}", "pool.max_actors=1", "ray.num_cpus=2",
        "decode.stride=6", *overrides])


@pytest.fixture(scope="module")
def video_run(tiny_demo, tmp_path_factory):
    cfg = _config(tiny_demo, tmp_path_factory.mktemp("label"))
    return cfg, label.run(cfg)


def test_label_files_hold_exactly_the_kept_boxes(video_run):
    cfg, summary = video_run
    out = Path(cfg.output.out_dir)
    labels = pd.read_parquet(out / "labels.parquet")
    boxes = pd.read_parquet(out / "boxes.parquet")
    assert summary["sources"] == {"total": 7, "processed": 7, "skipped_done": 0, "errored": 0}
    assert len(labels) == summary["frames"]["labelled"] == 7 * 8  # 45-frame videos at stride 6
    for row in labels.itertuples():
        assert Path(row.image_path).is_file()
        cls, xyxy = parse_yolo_labels(Path(row.label_path).read_text(), row.width, row.height)
        kept = boxes[(boxes.video_key == row.video_key) & (boxes.frame == row.frame) & boxes.kept]
        assert len(cls) == row.n_kept == len(kept)
        assert np.allclose(np.sort(xyxy, axis=0), np.sort(kept[["x1", "y1", "x2", "y2"]].to_numpy(), axis=0), atol=0.1)
    false_alarm = labels[labels.video_label.isin(["fp", "clean"])]
    assert (false_alarm.sample_kind != "unused").all(), "every false-alarm frame is used"
    assert set(labels[labels.video_label == "tp"].sample_kind) <= {"pseudo_labelled", "unused"}
    assert (boxes[boxes.kept].conf >= 0.9).all()
    fp_boxes = boxes[boxes.video_label.isin(["fp", "clean"])]
    assert not fp_boxes.kept.any() or (fp_boxes[fp_boxes.kept].conf >= 0.9).all()
    counts = boxes.reason.value_counts().to_dict()
    assert counts == summary["boxes"]["by_reason"] and sum(counts.values()) == summary["boxes"]["total"]
    pseudo = labels[labels.sample_kind == "pseudo_labelled"]
    assert (pseudo.loss_weight == 0.5).all() and (labels[labels.sample_kind == "hard_negative"].loss_weight == 1.0).all()
    assert {"weather", "scene", "video_stem"} <= set(labels.columns), "the manifest's metadata rides along"


def test_truth_report_agrees_with_a_hand_count(video_run):
    from engine.evaluate.world_truth import load_truth, matches_real_object

    cfg, summary = video_run
    boxes = pd.read_parquet(Path(cfg.output.out_dir) / "boxes.parquet")
    truth = load_truth(cfg.ground_truth)
    real = matches_real_object(boxes, truth)
    # the world's lookalike and clean videos hold no work-zone object at all
    assert not real[boxes.video_label.isin(["fp", "clean"]).to_numpy()].any()
    t = summary["truth"]
    assert t["boxes"] == len(boxes) and t["dropped"] == int((~boxes.kept).sum())
    if t["false_alarm_videos"]["dropped"]:
        assert t["false_alarm_videos"]["dropped_not_real"] == 1.0
    # hand check: a box exactly on a drawn object is real, one shifted off it is not
    one = truth.iloc[[0]]
    probe = pd.DataFrame({"video_stem": [one.video_stem.iloc[0]] * 2, "frame": [one.frame.iloc[0]] * 2,
                          "x1": [one.x1.iloc[0], one.x1.iloc[0] + 100], "y1": [one.y1.iloc[0]] * 2,
                          "x2": [one.x2.iloc[0], one.x2.iloc[0] + 100], "y2": [one.y2.iloc[0]] * 2})
    assert matches_real_object(probe, truth).tolist() == [True, False]


@pytest.mark.reliability("resume")
def test_rerun_skips_done_sources_and_a_rule_change_redoes_them(video_run, tiny_demo):
    cfg, first = video_run
    again = label.run(cfg)
    assert again["sources"] == {"total": 7, "processed": 0, "skipped_done": 7, "errored": 0}
    changed = cfg.model_copy(deep=True)
    changed.rules.keep_conf = 0.5
    redone = label.run(changed)
    assert redone["sources"]["processed"] == 7 and redone["boxes"]["kept"] >= first["boxes"]["kept"]
    label.run(cfg)  # back, for the other tests


@pytest.mark.reliability("bad input")
def test_candidates_manifest_with_missing_and_unreadable_images(tiny_demo, tmp_path):
    config, result = tiny_demo
    mine_out = Path(result["steps"]["mine"]["out_dir"])
    manifest = pd.read_parquet(mine_out / "candidates.parquet")
    assert len(manifest) >= 3
    shutil.copytree(mine_out / "candidates", tmp_path / "candidates")
    first, second = manifest.snapshot_path.iloc[0], manifest.snapshot_path.iloc[1]
    (tmp_path / first).unlink()  # listed, but gone
    (tmp_path / second).write_bytes(b"not a jpeg")  # listed, unreadable
    manifest.to_parquet(tmp_path / "candidates.parquet")
    cfg = _config(tiny_demo, tmp_path / "out", "input.kind=candidates", f"input.source={tmp_path / 'candidates.parquet'}")
    summary = label.run(cfg)
    errors = pd.read_parquet(tmp_path / "out" / "errors.parquet").set_index("path")["reason"]
    assert errors[str(tmp_path / first)] == "file not found"
    assert errors[str(tmp_path / second)] == "cannot read as an image"
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert len(labels) + len(errors) == len(manifest), "every listed image is labelled or an error row"
    assert summary["frames"]["unreadable"] == 2
    assert set(labels.video_label) <= {"fp", "clean"} and set(labels.sample_kind) <= {"hard_negative", "pseudo_labelled"}
    assert all(Path(p).is_file() for p in labels.image_path), "candidates keep their own JPEGs"


def test_image_folder(tiny_demo, tmp_path):
    config, _ = tiny_demo
    held = Path(config.work_dir) / "world" / "heldout" / "lookalike" / "images"
    for sub in ("a", "b/c"):
        (tmp_path / "imgs" / sub).mkdir(parents=True)
    for i, path in enumerate(sorted(held.glob("*.jpg"))[:6]):
        shutil.copy(path, tmp_path / "imgs" / ("a" if i < 3 else "b/c") / path.name)
    (tmp_path / "imgs" / "a" / "broken.jpg").write_text("text")
    cfg = _config(tiny_demo, tmp_path / "out", "input.kind=images", f"input.source={tmp_path / 'imgs'}",
                  "input.video_label=fp", "ground_truth=null")
    summary = label.run(cfg)
    assert summary["sources"]["total"] == 2 and summary["frames"]["labelled"] == 6 and summary["frames"]["unreadable"] == 1
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert sorted(labels.video_key.unique()) == ["a", "b__c"]
    assert "truth" not in summary
