"""Sampling weights, effective shares, near-duplicates and the split, on known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.build.dedup import near_duplicates, split_of
from engine.build.weights import effective_shares, sample_weights, unmatched_rules


def test_weights_follow_the_rules_exactly():
    samples = pd.DataFrame({
        "kind": ["positive", "hard_negative", "hard_negative", "pseudo_labelled", "background"],
        "category": [None, "orange_trucks", "roadside_signs", None, None],
        "weather": ["rain", "clear", "rain", None, "fog"],
        "region": ["north", "south", "north", "north", "east"],
    })
    w = sample_weights(samples, {"hard_negative": 2.0, "background": 0.5}, {"orange_trucks": 3.0},
                       {"weather": {"rain": 1.5}, "region": {"north": 2.0}})
    assert w.tolist() == pytest.approx([1.5 * 2.0, 2.0 * 3.0, 2.0 * 1.5 * 2.0, 2.0, 0.5])
    assert unmatched_rules(samples, {"orange_trucks": 3.0}, {"weather": {"rain": 1.5}, "region": {"north": 2.0}}) == []
    typos = unmatched_rules(samples, {"orange_truck": 3.0, "roadside_signs": 2.0},
                            {"weather": {"rain": 1.5, "snow": 2.0}, "regoin": {"north": 2.0}})
    assert typos == ["weights.category.orange_truck", "weights.metadata.weather.snow", "weights.metadata.regoin"]


def test_seed_003_forged_area_weights():
    samples = pd.DataFrame({"kind": ["forged"] * 4 + ["hard_negative"],
                            "forgery_area_frac": [0.005, 0.01, 0.049, 0.2, 0.0]})
    bands = [(0.01, 3.0), (0.05, 2.0), (float("inf"), 1.0)]
    w = sample_weights(samples, {"hard_negative": 5.0}, {}, {}, bands)
    assert w.tolist() == [3.0, 2.0, 2.0, 1.0, 5.0]


def test_effective_shares():
    samples = pd.DataFrame({"kind": ["a", "a", "a", "b"]})
    shares = effective_shares(samples, np.array([1.0, 1.0, 1.0, 3.0]))
    assert shares == {"a": {"samples": 3, "share": 0.75, "weighted_share": 0.5},
                      "b": {"samples": 1, "share": 0.25, "weighted_share": 0.5}}


def test_near_duplicates_removes_planted_ones_and_keeps_distinct_rows():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 64))  # random directions in 64-d are nearly orthogonal
    planted = base[[3, 7, 7]] + rng.normal(scale=0.01, size=(3, 64))
    dup = near_duplicates(np.vstack([base, planted]), threshold=0.95)
    assert (dup[:20] == -1).all(), "distinct rows are all kept"
    assert dup[20:].tolist() == [3, 7, 7]
    # order decides which of a pair is kept
    assert near_duplicates(np.vstack([planted[0], base[3]]), 0.95).tolist() == [-1, 0]
    assert near_duplicates(np.zeros((0, 4)), 0.9).tolist() == []
    # a row is a duplicate only of a kept row of its own group: the planted copies of row 7 in
    # another group are kept (the first) and the second duplicates the first, not row 7
    groups = [0] * 20 + [0, 1, 1]
    assert near_duplicates(np.vstack([base, planted]), 0.95, groups=groups)[20:].tolist() == [3, -1, 21]


def test_split_is_per_group_and_stable():
    groups = [f"video_{i}" for i in range(400)]
    splits = [split_of(g, 0.25) for g in groups]
    assert splits == [split_of(g, 0.25) for g in groups]
    assert 0.18 < splits.count("val") / len(groups) < 0.32
    assert split_of("x", 0.0) == "train" and split_of("x", 1.0) == "val"


def test_data_yaml_folders_resolve_like_ultralytics(tmp_path, monkeypatch):
    from engine.build.detection import read_data_yaml

    (tmp_path / "set" / "images" / "train").mkdir(parents=True)
    (tmp_path / "set" / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a, b]\n")
    monkeypatch.chdir(tmp_path)  # a relative path to the yaml, as the demo's runs/demo/... is
    names, splits = read_data_yaml(Path("set/data.yaml"))
    assert names == {0: "a", 1: "b"} and splits["train"] == Path("set/images/train")
    assert splits["train"].is_dir()
    (tmp_path / "set" / "data.yaml").write_text(f"path: {tmp_path / 'set'}\ntrain: images/train\nnames: [a]\n")
    assert read_data_yaml(Path("set/data.yaml"))[1]["train"] == tmp_path / "set" / "images" / "train"
