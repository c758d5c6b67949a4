"""`quarry build` on the tiny demo's world: detection (base data + labelled frames + reviewed
candidates) and segmentation sets; split by video, weights by rule, exports, bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.build.weights import sample_weights
from engine.config import ConfigError, load_config
from engine.labels.config import LabelConfig
from engine.review.config import ReviewConfig
from jobs import build, label, review

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray")]


@pytest.fixture(scope="module")
def inputs(tiny_demo, tmp_path_factory):
    """Labelled frames and accepted candidates from the tiny demo, in a folder of their own."""
    config, result = tiny_demo
    work, root = Path(config.work_dir), tmp_path_factory.mktemp("build-inputs")
    label.run(load_config(LabelConfig, None, [
        f"input.source={work / 'world' / 'videos.parquet'}", f"detector.source={work / 'base' / 'base.pt'}",
        f"output.out_dir={root / 'label'}", "pool.max_actors=1", "decode.stride=6", "tracking.enabled=false"]))
    mine_out = Path(result["steps"]["mine"]["out_dir"])
    shutil.copytree(mine_out / "candidates", root / "mine" / "candidates")
    shutil.copy(mine_out / "candidates.parquet", root / "mine" / "candidates.parquet")
    manifest = root / "mine" / "candidates.parquet"
    review.run(load_config(ReviewConfig, None, [f"candidates={manifest}", "command=categorise",
                                                "categorise.method=rules",
                                                "categorise.rules=[{category: orange_trucks, where: 'frame >= 0'}]"]))
    review.run(load_config(ReviewConfig, None, [f"candidates={manifest}", "command=accept"]))
    return work, root


def _build(work, root, out, *overrides):
    cfg = load_config(build.BuildConfig, None, [
        f"detect.base_data={work / 'world' / 'detection' / 'data.yaml'}", f"detect.labels={root / 'label' / 'labels.parquet'}",
        f"detect.candidates={root / 'mine' / 'candidates.parquet'}", f"out_dir={out}",
        f"clip.checkpoint={work / 'base' / 'clip.pt'}", "weights.category={orange_trucks: 3.0}",
        "weights.metadata={weather: {rain: 2.0}}", *overrides])
    return cfg, build.run(cfg)


def test_detection_set_merges_splits_by_video_and_weights_by_rule(inputs, tmp_path):
    work, root = inputs
    cfg, summary = _build(work, root, tmp_path / "ds")
    samples = pd.read_parquet(tmp_path / "ds" / "samples.parquet")
    assert set(samples.kind) == {"positive", "background", "hard_negative"} | ({"pseudo_labelled"} & set(samples.kind))
    accepted = samples[samples.source == "review"]
    assert len(accepted) > 0 and (accepted.kind == "hard_negative").all() and (accepted.category == "orange_trucks").all()
    assert (accepted.n_objects == 0).all(), "reviewed candidates are background: empty label files"
    new = samples[samples.source != "base"]
    assert (new.groupby("group").split.nunique() == 1).all(), "no video's frames fall in two splits"
    expected = sample_weights(samples, cfg.weights.kind, {"orange_trucks": 3.0}, {"weather": {"rain": 2.0}})
    assert np.allclose(samples.weight, expected)
    rain_hn = samples[(samples.kind == "hard_negative") & (samples.weather == "rain") & (samples.category == "orange_trucks")]
    assert (rain_hn.weight == 2.0 * 3.0 * 2.0).all()
    for row in samples.itertuples():
        assert (tmp_path / "ds" / row.path).is_file() and (tmp_path / "ds" / row.label_path).is_file()
    share = summary["effective_share_train"]["hard_negative"]
    assert share["weighted_share"] > share["share"], "weighting raises the hard negatives' share"
    data = yaml.safe_load((tmp_path / "ds" / "data.yaml").read_text())
    assert data["names"] == {0: "cone", 1: "barrel", 2: "sign", 3: "barrier"}
    dups = pd.read_parquet(tmp_path / "ds" / "duplicates.parquet")
    assert len(dups) == summary["duplicates_dropped"] and not set(dups.name) & set(samples.name)


def test_a_frame_with_objects_is_never_a_duplicate_of_one_without(inputs, tmp_path):
    """Near-duplicates are judged within frames with objects and within frames without: with
    every embedding identical, one new frame of each survives, the first of each in build order."""
    from engine.build.detection import build_detection_set

    work, root = inputs
    cfg = load_config(build.BuildConfig, None, [
        f"detect.base_data={work / 'world' / 'detection' / 'data.yaml'}", f"detect.labels={root / 'label' / 'labels.parquet'}",
        f"detect.candidates={root / 'mine' / 'candidates.parquet'}", f"out_dir={tmp_path / 'ds'}"])
    built = build_detection_set(cfg, embed=lambda paths: np.ones((len(paths), 8)))
    new = built["samples"][built["samples"].source != "base"]
    assert sorted(new.n_objects > 0) == [False, True], new[["name", "kind", "n_objects"]]
    assert new[new.n_objects == 0].source.tolist() == ["review"], "a reviewed candidate is preferred"
    assert len(built["duplicates"]) > 0 and not set(built["duplicates"].name) & set(new.name)


def test_coco_export_loads_in_pycocotools_with_the_right_counts(inputs, tmp_path):
    from pycocotools.coco import COCO

    work, root = inputs
    _, summary = _build(work, root, tmp_path / "ds", "dedup=false")
    samples = pd.read_parquet(tmp_path / "ds" / "samples.parquet")
    for split in ("train", "val"):
        coco = COCO(summary["exports"][f"coco_{split}"])
        part = samples[samples.split == split]
        assert len(coco.getImgIds()) == len(part)
        assert len(coco.getAnnIds()) == int(part.n_objects.sum())
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["cone", "barrel", "sign", "barrier"]
    tasks = json.loads(Path(summary["exports"]["labelstudio"]).read_text())
    assert len(tasks) == len(samples)
    assert sum(len(t["predictions"][0]["result"]) for t in tasks) == int(samples.n_objects.sum())


@pytest.mark.reliability("bad input")
def test_a_bad_label_line_and_a_missing_image_are_error_rows(inputs, tmp_path):
    work, root = inputs
    broken = tmp_path / "label"
    shutil.copytree(root / "label", broken)
    labels = pd.read_parquet(broken / "labels.parquet")
    used = labels[labels.use].reset_index(drop=True)
    bad_label = Path(used.label_path[0])
    labels["label_path"] = labels.label_path.str.replace(str(root / "label"), str(broken), regex=False)
    bad_label = broken / bad_label.relative_to(root / "label")
    bad_label.write_text("0 0.5 0.5\n")  # three values, not five
    gone = used.image_path[1]
    labels.loc[labels.image_path == gone, "image_path"] = str(tmp_path / "vanished.jpg")
    labels.to_parquet(broken / "labels.parquet")
    _, summary = _build(work, root, tmp_path / "ds", f"detect.labels={broken / 'labels.parquet'}", "dedup=false")
    errors = {e["path"]: e["reason"] for e in summary["errors"]}
    assert errors[str(tmp_path / "vanished.jpg")] == "image not found"
    assert errors[str(bad_label)].startswith("bad label file: YOLO label lines need 5 values")
    n_used = int(labels.use.sum())
    samples = pd.read_parquet(tmp_path / "ds" / "samples.parquet")
    assert (samples.source == "label").sum() == n_used - 2, "only the two bad samples are left out"


def test_segmentation_set_with_zero_masks_and_seed_003_weights(tiny_demo, tmp_path):
    import cv2

    config, _ = tiny_demo
    world = Path(config.work_dir) / "world"
    cfg = load_config(build.BuildConfig, None, ["task=segment", f"segment.index={world / 'segmentation' / 'index.parquet'}",
                                                f"out_dir={tmp_path / 'seg'}", "weights.kind={hard_negative: 5.0}"])
    summary = build.run(cfg)
    samples = pd.read_parquet(tmp_path / "seg" / "samples.parquet")
    assert summary["by_kind"] == {"forged": 8, "hard_negative": 8}
    for row in samples.itertuples():
        mask = cv2.imread(str(tmp_path / "seg" / row.mask_path), cv2.IMREAD_GRAYSCALE)
        assert (mask.max() == 0) == (row.kind == "hard_negative")
    area = samples.forgery_area_frac
    expected = np.where(samples.kind == "hard_negative", 5.0, np.where(area < 0.01, 3.0, np.where(area < 0.05, 2.0, 1.0)))
    assert samples.weight.tolist() == expected.tolist()
    # a detection set built into the same folder would replace its samples and images and leave
    # its masks (the documented `quarry build task=segment ...` did that to runs/dataset)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "seg").rglob("*")}
    detect = load_config(build.BuildConfig, None, [f"detect.base_data={world / 'detection' / 'data.yaml'}",
                                                   "detect.labels=null", "detect.candidates=null", f"out_dir={tmp_path / 'seg'}"])
    with pytest.raises(ConfigError, match=r"out_dir = '.*seg': holds a segment set; building a detect set there"):
        build.run(detect)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "seg").rglob("*")} == before


def test_scan_hard_negatives_from_a_relative_index_reach_the_segmentation_set(tiny_demo, tmp_path, monkeypatch):
    """A relative work dir (`quarry demo`'s runs/demo): the scan's table names absolute images,
    so the build, reading it from another folder, finds every hard negative."""
    from engine.segment.scan import ScanInput, list_images

    config, _ = tiny_demo
    work = Path(config.work_dir)
    monkeypatch.chdir(work.parent)
    index = Path(work.name) / "world" / "segmentation" / "index.parquet"
    paths = list_images(ScanInput(source=str(index)))
    assert len(paths) == 8 and all(Path(p).is_absolute() and Path(p).is_file() for p in paths)
    (tmp_path / "scan").mkdir()
    pd.DataFrame({"path": paths, "image": paths}).to_parquet(tmp_path / "scan" / "hard_negatives.parquet")
    cfg = load_config(build.BuildConfig, None, ["task=segment", f"segment.index={index}", f"out_dir={tmp_path / 'seg'}",
                                                f"segment.hard_negatives={tmp_path / 'scan' / 'hard_negatives.parquet'}"])
    summary = build.run(cfg)
    assert summary["by_kind"] == {"forged": 8, "hard_negative": 8} and summary["errors"] == []


@pytest.mark.reliability("bad input")
def test_labelled_edge_cases_replace_the_pseudo_label_of_their_frame_and_an_unlabelled_one_is_an_error_row(
        inputs, tmp_path):
    """Edge cases: the labeller's YOLO file per candidate becomes an `edge_case` sample (here the
    world's ground truth answers, as in the demo); a candidate without one is an error row."""
    from engine.demo.steps import label_edge_cases
    from engine.evaluate.world_truth import load_truth, truth_label_texts

    work, root = inputs
    labels = pd.read_parquet(root / "label" / "labels.parquet")
    used = labels[labels.use].sort_values(["video_key", "frame"]).head(3).reset_index(drop=True)
    assert len(used) == 3
    edges = tmp_path / "edges"
    for path in used.image_path:  # the snapshots, as edge-case mining writes them beside its manifest
        (edges / "candidates").mkdir(parents=True, exist_ok=True)
        shutil.copy(path, edges / "candidates" / Path(path).name)
    manifest = used.assign(snapshot_path=["candidates/" + Path(p).name for p in used.image_path],
                           video_path=[f"/videos/{k}.mp4" for k in used.video_key])
    manifest[["video_key", "frame", "snapshot_path", "video_path", "video_label", "width", "height"]].to_parquet(
        edges / "candidates.parquet")
    assert label_edge_cases(edges / "candidates.parquet", work / "world", edges / "labels") == 3
    unlabelled = edges / "labels" / f"{used.video_key[2]}_f{used.frame[2]}.txt"
    unlabelled.unlink()

    _, summary = _build(work, root, tmp_path / "ds", f"detect.edge_cases={edges / 'candidates.parquet'}", "dedup=false",
                        "weights.kind={edge_case: 4.0}")
    samples = pd.read_parquet(tmp_path / "ds" / "samples.parquet")
    edge = samples[samples.kind == "edge_case"].sort_values("frame")
    assert summary["by_kind"]["edge_case"] == 2 and (edge.source == "edge").all() and (edge.weight == 4.0).all()
    truth = truth_label_texts(used.head(2), load_truth(work / "world"))
    assert [(tmp_path / "ds" / p).read_text() for p in edge.label_path] == truth
    assert edge.n_objects.tolist() == [len(t.splitlines()) for t in truth]
    from_label = samples[samples.source == "label"]
    replaced = set(zip(used.video_key[:2], used.frame[:2]))
    assert not replaced & set(zip(from_label.video_key, from_label.frame)), "the labeller's answer replaces the pseudo-label"
    assert (used.video_key[2], used.frame[2]) in set(zip(from_label.video_key, from_label.frame))
    assert len(from_label) == int(labels.use.sum()) - 2
    assert {"path": str(unlabelled), "reason": "edge case not labelled: no label file"} in summary["errors"]
    assert (samples[samples.source != "base"].groupby("group").split.nunique() == 1).all()


@pytest.mark.reliability("bad config")
def test_edge_cases_without_the_labellers_folder_name_the_key(inputs, tmp_path):
    work, root = inputs
    (tmp_path / "edges").mkdir()
    pd.DataFrame({"video_key": ["v"], "frame": [0], "snapshot_path": ["candidates/v_f0.jpg"]}).to_parquet(
        tmp_path / "edges" / "candidates.parquet")
    with pytest.raises(ConfigError, match=r"detect.edge_labels = .*edges/labels.*no such folder"):
        _build(work, root, tmp_path / "ds", f"detect.edge_cases={tmp_path / 'edges' / 'candidates.parquet'}")
