"""Frame-level metrics against scikit-learn, calibration, video events on hand-made timelines, and
the weights digest that tells two files of one model apart from two models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, matthews_corrcoef, precision_score, recall_score

from engine.evaluate.events import alarm_events, video_events
from engine.metrics.calibration import apply_temperature, fit_temperature, reliability
from engine.metrics.classification import binary_metrics


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_equal_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random(200) < 0.4
    predicted = np.where(rng.random(200) < 0.8, truth, ~truth)
    m = binary_metrics(truth, predicted)
    assert m["precision"] == precision_score(truth, predicted)
    assert m["recall"] == recall_score(truth, predicted)
    assert m["f1"] == pytest.approx(f1_score(truth, predicted), abs=1e-12)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(truth, predicted), abs=1e-12)
    assert m["fp_rate"] == ((~truth) & predicted).sum() / (~truth).sum()


def test_binary_metrics_degenerate_cases_match_zero_division_0():
    for truth, predicted in (([0, 0, 0], [0, 0, 0]), ([1, 1], [1, 1]), ([0, 1], [0, 0])):
        m = binary_metrics(truth, predicted)
        assert m["precision"] == precision_score(truth, predicted, zero_division=0)
        assert m["recall"] == recall_score(truth, predicted, zero_division=0)
        assert m["mcc"] == pytest.approx(matthews_corrcoef(truth, predicted))


def test_ece_known_answer():
    # bin [0.8, 0.9): confidence 0.85 x4, 2 right -> gap 0.35; bin [0.2, 0.3): 0.25 x4, 1 right -> gap 0
    conf = [0.85] * 4 + [0.25] * 4
    correct = [1, 1, 0, 0, 1, 0, 0, 0]
    r = reliability(conf, correct, bins=10)
    assert r["ece"] == pytest.approx(0.5 * 0.35 + 0.5 * 0.0)
    assert [b["count"] for b in r["bins"]] == [4, 4]


def test_temperature_scaling_lowers_ece_on_an_overconfident_set():
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.05, 0.95, 4000)
    correct = rng.random(4000) < true_p
    logits = np.log(true_p / (1 - true_p)) * 3.0  # over-confident: logits 3x too large
    conf = 1 / (1 + np.exp(-logits))
    fit, test = slice(0, 2000), slice(2000, None)
    t = fit_temperature(conf[fit], correct[fit])
    assert t == pytest.approx(3.0, rel=0.15)
    before = reliability(conf[test], correct[test])["ece"]
    after = reliability(apply_temperature(conf[test], t), correct[test])["ece"]
    assert after < before / 3, (before, after)


def test_alarm_events_on_hand_made_timelines():
    assert alarm_events([0, 1, 1, 0, 0, 1, 0, 1]) == 3
    assert alarm_events([0, 1, 1, 0, 0, 1, 0, 1], merge_gap=1) == 2
    assert alarm_events([0, 1, 1, 0, 0, 1, 0, 1], merge_gap=2) == 1
    assert alarm_events([]) == 0 and alarm_events([1, 1, 1]) == 1 and alarm_events([0, 0]) == 0


def test_video_events_recall_and_false_alarms_per_hour():
    def tl(gates):
        return pd.DataFrame({"frame": np.arange(len(gates))[::-1] * 2, "gate_pass": list(gates)[::-1]})

    timelines = {"wz1": tl([0, 1, 1, 0]), "wz2": tl([0, 0, 0, 0]), "la1": tl([1, 0, 1, 0]), "la2": tl([0, 0, 0, 0]),
                 "cl1": tl([0, 1, 0, 0])}
    labels = {"wz1": "tp", "wz2": "tp", "la1": "fp", "la2": "fp", "cl1": "clean"}
    durations = {k: 360.0 for k in timelines}  # 6 minutes each: 3 negative videos = 0.3 h
    r = video_events(timelines, labels, durations)
    assert r["event_recall"] == 0.5 and r["detected"] == 1
    assert r["false_alarms"] == 3 and r["false_alarms_per_video"] == 1.0
    assert r["false_alarms_per_hour"] == pytest.approx(3 / 0.3)
    assert r["videos_with_false_alarm"] == 2


def test_the_weights_digest_sees_every_bit_of_the_weights_and_the_class_names():
    import torch

    from engine.models.detector import weights_digest

    first = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    same.load_state_dict(first.state_dict())
    assert weights_digest(same) == weights_digest(first)
    with torch.no_grad():  # one weight moved by the smallest step a float32 takes
        same[0].bias[0] = torch.nextafter(same[0].bias[0], torch.tensor(1.0))
    assert weights_digest(same) != weights_digest(first)
    renamed = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    renamed.load_state_dict(first.state_dict())
    renamed.names = {0: "cone"}
    assert weights_digest(renamed) != weights_digest(first)
    buffers = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    buffers.load_state_dict(first.state_dict())
    buffers[1].num_batches_tracked += 1  # a buffer, not a parameter
    assert weights_digest(buffers) != weights_digest(first)


def test_events_are_mined_with_the_first_checkpoint_of_their_weights_and_an_architecture_as_given(tmp_path):
    from engine.evaluate.run import _events_model

    arch = tmp_path / "net.yaml"  # random weights: the mining run builds them from it (it cannot load a copy as a .pt)
    arch.write_text("nc: 1\n")
    assert _events_model(arch, tmp_path / "events" / "a") == arch
    assert not (tmp_path / "events" / "a").exists()
    first, other = tmp_path / "first.pt", tmp_path / "other.pt"
    first.write_bytes(b"the weights, as the fine-tune saved them")
    other.write_bytes(b"the same weights, saved by a trial with its metrics")
    kept = _events_model(first, tmp_path / "events" / "b")
    assert kept == tmp_path / "events" / "b" / "detector.pt" and kept.read_bytes() == first.read_bytes()
    assert _events_model(other, tmp_path / "events" / "b") == kept and kept.read_bytes() == first.read_bytes()
