"""Would more hard negatives let the segmentation recipe meet its bar? An experiment on a
finished demo's segmentation branch, in one process (no Ray), for docs/demo.md:

    python -m bench.segment_pool --demo runs/demo --pool 400 --epochs 20 --lr 3e-4
    python -m bench.segment_pool --demo runs/demo --pool 400 --scratch    # ~7 min on 2 cores

The demo's world has 60 authentic training images, in which the scan finds 12-17 hard
negatives. This writes the same seed's segmentation set with `--pool` authentic training images
(the first 60 are the demo's own: images are drawn per index), scans them with the demo's base
segmenter by the scan's rule, and fine-tunes that base on the demo's forged training images
plus the hard negatives found (weight `--hard-negative-weight`; seed 003's loss, AdamW, cosine,
batch 16 as the demo's two workers of 8 make). With `--scratch` it trains the base's recipe from
random weights on the forged images and the whole pool instead: can the model class tell the
smudge from a paste when it sees many? Both score the demo's held-out split (other seeds) as the
demo does. Writes bench/results/segment-pool-<time>.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd


def write_pool(demo: Path, pool: int, out: Path) -> pd.DataFrame:
    """The demo world's seed, segmentation set only, with `pool` authentic training images."""
    import yaml

    from engine.synth.config import SynthConfig
    from engine.synth.datasets import write_segmentation_set

    world = yaml.safe_load((demo / "world" / "config.resolved.yaml").read_text())
    cfg = SynthConfig.model_validate({**world, "out_dir": str(out)})
    cfg.segmentation.n_authentic = pool
    write_segmentation_set(cfg)
    return pd.read_parquet(out / "segmentation" / "index.parquet")


def scan_pool(base, pool_root: Path, authentic: pd.DataFrame, scan_cfg: dict) -> pd.DataFrame:
    """The authentic images the base flags by the demo scan's rule."""
    from engine.segment.metrics import FpRule, image_fp_stats, is_false_positive
    from engine.segment.predict import predict_probabilities, read_rgb

    rule = FpRule(scan_cfg["threshold"], scan_cfg["min_fp_ratio"], scan_cfg["min_area_px"])
    probs = predict_probabilities(base, [read_rgb(pool_root / p) for p in authentic["image"]], scan_cfg["imgsz"])
    flagged = [is_false_positive(image_fp_stats(p, rule.threshold), rule) for p in probs]
    return authentic[flagged]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo", help="a finished demo's work dir")
    parser.add_argument("--pool", type=int, default=400, help="authentic training images to scan")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--hard-negative-weight", type=float, default=2.0, help="sampling weight (the demo's: 2)")
    parser.add_argument("--scratch", action="store_true", help="train from random weights on forged + the whole pool")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()

    import tempfile

    import torch
    import yaml

    from bench.mining import publish
    from engine.demo.config import DemoConfig
    from engine.models.segmenter import SegmenterSpec, build_segmenter
    from engine.offline import enable_offline
    from engine.segment.base import heldout_scores, train_base_segmenter
    from engine.segment.data import SegmentationDataset
    from engine.segment.loop import train_plain
    from engine.train.augment import segmentation_augment
    from engine.train.config import SegmentTrainConfig

    enable_offline()
    demo = Path(args.demo)
    base_cfg = DemoConfig.model_validate(yaml.safe_load((demo / "config.resolved.yaml").read_text())).segmenter
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        index = write_pool(demo, args.pool, Path(tmp))
        base = build_segmenter(SegmenterSpec(checkpoint=demo / "base-seg" / "base_seg.pt"))
        # the demo's held-out scoring; the pool world's held-out split is the demo's (same seed, drawn per index)
        before = heldout_scores(base, Path(tmp), base_cfg.imgsz, base_cfg.threshold, base_cfg.min_fp_ratio)
        authentic = index[(index["split"] == "train") & (index["kind"] == "authentic")]
        result = {"demo": str(demo), "pool": args.pool, "scratch": args.scratch, "base": before}
        if args.scratch:  # the base's own recipe (engine/segment/base.py) on the pool world's training split
            after = train_base_segmenter(Path(tmp), Path(tmp) / "scratch.pt", base_cfg)["heldout"]
            result["smudged_in_pool"] = int(authentic["smooth_artifact"].sum())
        else:
            pool_root = Path(tmp) / "segmentation"
            hard = scan_pool(base, pool_root, authentic, yaml.safe_load((demo / "scan" / "config.resolved.yaml").read_text()))
            built = pd.read_parquet(demo / "dataset-seg" / "samples.parquet")
            forged = built[(built["kind"] == "forged") & (built["split"] == "train")]
            hard = hard.assign(path=[str(pool_root / p) for p in hard["image"]], mask_path="", kind="hard_negative",
                               weight=args.hard_negative_weight, loss_weight=1.0)
            columns = ["path", "mask_path", "kind", "loss_weight", "weight"]
            samples = pd.concat([forged[columns], hard[columns]], ignore_index=True)
            # the demo's fine-tune: seed 003's loss (0.5 / 0.5 / 4.0), two workers of 8 = batch 16, weighted draws
            s = SegmentTrainConfig(imgsz=base_cfg.imgsz, batch=16, lr=args.lr)
            for param in base.parameters():
                param.requires_grad_(True)
            torch.manual_seed(s.seed)
            train_plain(base, SegmentationDataset(demo / "dataset-seg", samples, s.imgsz, segmentation_augment("light", s.seed)),
                        s, args.epochs, weights=samples["weight"].to_numpy())
            after = heldout_scores(base, Path(tmp), base_cfg.imgsz, base_cfg.threshold, base_cfg.min_fp_ratio)
            result.update(epochs=args.epochs, lr=args.lr, hard_negative_weight=args.hard_negative_weight,
                          hard_negatives=len(hard), smudged_hard_negatives=int(hard["smooth_artifact"].sum()))
    result.update(trained=after, seconds=round(time.perf_counter() - started, 1))
    publish(result, args.out, "segment-pool", render, None)


def render(result: dict, path: str) -> str:
    how = "from scratch on forged + pool" if result["scratch"] else (
        f"fine-tuned on forged + {result['hard_negatives']} hard negatives")
    b, t = result["base"], result["trained"]
    return (f"pool {result['pool']} authentic; {how}: held-out FP rate {b['fp_rate']:.3f} -> {t['fp_rate']:.3f}, "
            f"pixel recall {b['recall']:.3f} -> {t['recall']:.3f} ({result['seconds']} s; {path})")


if __name__ == "__main__":
    main()
