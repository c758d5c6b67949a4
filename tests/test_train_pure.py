"""The distributed weighted sampler and the losses, against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from engine.train.losses import detection_fp_penalty, dice_loss, focal_loss, segmentation_fp_penalty, segmentation_loss
from engine.train.sampler import WeightedDistributedSampler


def test_sampler_ranks_split_one_weighted_draw():
    weights = [1.0, 2.0, 0.0, 5.0]
    ranks = [WeightedDistributedSampler(weights, 1000, rank=r, world_size=2, seed=3) for r in (0, 1)]
    draws = [list(s) for s in ranks]
    assert all(len(d) == 500 == len(s) for d, s in zip(draws, ranks))
    whole = ranks[0].epoch_draw().tolist()
    assert draws[0] == whole[0::2] and draws[1] == whole[1::2], "each rank takes its positions of one draw"
    assert 2 not in whole, "a zero weight is never drawn"
    ranks[0].set_epoch(1)
    assert list(ranks[0]) != draws[0], "epochs differ"
    again = WeightedDistributedSampler(weights, 1000, rank=0, world_size=2, seed=3)
    assert list(again) == draws[0], "the same seed repeats"


def test_sampler_frequencies_follow_the_weights():
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    sampler = WeightedDistributedSampler(weights, 40_000, rank=0, world_size=1, seed=0)
    freq = np.bincount(list(sampler), minlength=4) / 40_000
    # binomial standard error at p = 0.4, n = 40,000 is 0.0024: 4 sigma
    assert np.allclose(freq, weights / weights.sum(), atol=0.01)


def test_sampler_rejects_bad_weights():
    for bad in ([], [0.0, 0.0], [1.0, -1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            WeightedDistributedSampler(bad)
    with pytest.raises(ValueError, match="rank 2"):
        WeightedDistributedSampler([1.0], rank=2, world_size=2)


def test_detection_fp_penalty_known_answer():
    # 2 images, 2 classes, 4 anchors; image 1 has no object
    probs = torch.tensor([[[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1]],
                          [[0.2, 0.6, 0.1, 0.3], [0.5, 0.1, 0.7, 0.1]]])
    logits = torch.log(probs / (1 - probs))
    negative = torch.tensor([False, True])
    # image 1: per-anchor max over classes = [0.5, 0.6, 0.7, 0.3]; top 2 mean = 0.65
    assert float(detection_fp_penalty(logits, negative, top_k=2)) == pytest.approx(0.65)
    assert float(detection_fp_penalty(logits, negative, top_k=10)) == pytest.approx(0.525)
    assert float(detection_fp_penalty(logits, torch.tensor([False, False]))) == 0.0


def test_segmentation_losses_known_answers():
    logits = torch.tensor([[[[0.0, 2.0], [-2.0, 0.0]]]])
    target = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    p = torch.sigmoid(logits).reshape(-1)
    t = target.reshape(-1)
    assert float(dice_loss(logits, target)) == pytest.approx(1 - (2 * float((p * t).sum()) + 1) / (float(p.sum() + t.sum()) + 1))
    # focal: hand-computed per pixel, alpha 0.25, gamma 2
    expected = []
    for pi, ti in zip(p.tolist(), t.tolist()):
        pt = pi if ti else 1 - pi
        at = 0.25 if ti else 0.75
        expected.append(-at * (1 - pt) ** 2 * math.log(pt))
    assert float(focal_loss(logits, target)) == pytest.approx(np.mean(expected), rel=1e-5)
    two = torch.cat([logits, torch.full_like(logits, -1.0)])
    authentic = torch.tensor([False, True])
    assert float(segmentation_fp_penalty(two, authentic)) == pytest.approx(float(torch.sigmoid(torch.tensor(-1.0))))
    total, parts = segmentation_loss(two, torch.cat([target, torch.zeros_like(target)]), authentic, 0.5, 0.5, 4.0)
    assert float(total) == pytest.approx(0.5 * parts["focal"] + 0.5 * parts["dice"] + 4.0 * parts["fp"], rel=1e-6)


@pytest.mark.parametrize("preset", ["light", "medium", "heavy", "weather"])
def test_every_augmentation_preset_runs_without_warnings(preset):
    import warnings

    from engine.train.augment import detection_augment, segmentation_augment

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (144, 256, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # albumentations 2 only warns on wrong argument names
        for _ in range(8):
            out = detection_augment(preset)(image=image, bboxes=[[10, 20, 60, 100], [200, 50, 250, 140]],
                                            class_labels=[0, 2])
            assert out["image"].shape == image.shape and len(out["bboxes"]) == len(out["class_labels"]) <= 2
            seg = segmentation_augment(preset)(image=image[:128, :128], mask=np.zeros((128, 128), np.uint8))
            assert seg["mask"].shape == (128, 128)


def test_letterbox_maps_boxes():
    from engine.train.detect_data import letterbox

    image = np.zeros((144, 256, 3), np.uint8)
    image[40:60, 100:120] = 255
    out, scale, (px, py) = letterbox(image, 128)
    assert out.shape == (128, 128, 3) and scale == 0.5 and (px, py) == (0, 28)
    ys, xs = np.nonzero(out[..., 0] == 255)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (50, 48, 60, 58)


def test_segmentation_fp_rule_and_pixel_metrics_known_answers():
    from engine.segment.metrics import FpRule, SegmentationEvaluator, image_fp_stats, is_false_positive

    prob = np.zeros((40, 40))
    prob[0:10, 0:10] = 0.9  # a 100 px region
    prob[30:33, 30:33] = 0.8  # a 9 px region
    prob[20, 20] = 0.6  # below 0.75
    stats = image_fp_stats(prob, 0.75)
    assert stats == {"fp_ratio": 109 / 1600, "regions": 2, "largest_region_px": 100, "max_prob": 0.9}
    assert is_false_positive(stats, FpRule(0.75, 0.001, 100)) and not is_false_positive(stats, FpRule(0.75, 0.001, 101))
    assert not is_false_positive(stats, FpRule(0.75, 0.1, 0)), "the share bound applies too"
    ev = SegmentationEvaluator(FpRule(0.5, 0.001, 50))
    mask = np.zeros((40, 40), np.uint8)
    mask[0:10, 0:20] = 1  # 200 forged px: 100 found, 100 missed; the other regions are 9 + 1 FPs
    ev.add_image(prob, mask)
    ev.add_image(prob, np.zeros((40, 40)))  # authentic, flagged (100 px region)
    ev.add_image(np.zeros((40, 40)), np.zeros((40, 40)))  # authentic, clean
    r = ev.results()
    assert r["precision"] == pytest.approx(100 / 110) and r["recall"] == pytest.approx(0.5)
    assert r["f1"] == pytest.approx(2 * (100 / 110) * 0.5 / (100 / 110 + 0.5))
    assert r["fp_rate"] == 0.5 and r["authentic_images"] == 2


def test_plain_segmentation_training_draws_by_the_weights():
    """`train_plain(weights=...)` draws as the Ray loop's sampler does: a zero weight is never drawn."""
    from torch.utils.data import Dataset

    from engine.segment.loop import train_plain
    from engine.train.config import SegmentTrainConfig

    class Recorded(Dataset):
        def __init__(self):
            self.drawn = []

        def __len__(self):
            return 4

        def __getitem__(self, i):
            self.drawn.append(i)
            mask = torch.zeros(1, 8, 8) if i % 2 else torch.ones(1, 8, 8)
            return torch.full((3, 8, 8), float(i)), mask, bool(i % 2), 1.0

    data, model = Recorded(), torch.nn.Conv2d(3, 1, 1)
    losses = train_plain(model, data, SegmentTrainConfig(batch=2), epochs=3, weights=np.array([0.0, 1.0, 1.0, 0.0]))
    assert len(losses) == 3 and len(data.drawn) == 12 and set(data.drawn) == {1, 2}
    shuffled = Recorded()
    train_plain(model, shuffled, SegmentTrainConfig(batch=2), epochs=1)
    assert sorted(shuffled.drawn) == [0, 1, 2, 3]
