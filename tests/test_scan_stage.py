"""`quarry scan`'s actor puts its models on the configured device: on a GPU actor
(pool.num_gpus_per_actor, as configs/cluster/scan.yaml asks) `device: auto` is CUDA."""

import torch

from engine.config import config_to_dict
from engine.models.segmenter import SegmenterSpec, build_segmenter
from engine.segment.scan import ScanConfig, ScanModel, ScanStage


def test_scan_models_follow_the_configured_device(tmp_path):
    checkpoint = tmp_path / "seg.pt"
    torch.save(build_segmenter(SegmenterSpec()).state_dict(), checkpoint)

    def device_of(device: str) -> str:
        stage = ScanStage(config_to_dict(ScanConfig(models=[ScanModel(checkpoint=checkpoint)], device=device)))
        return next(stage.models[0].parameters()).device.type

    assert device_of("meta") == "meta"  # any torch device reaches the model, without a GPU here
    assert device_of("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_the_scan_prints_its_counts_rule_and_table_as_the_other_jobs_do():
    """It printed its summary.json as JSON, unlike every other job."""
    from jobs.scan import format_summary

    summary = {"out_dir": "/o", "images": 60, "scanned": 59, "errored": 1, "flagged": 13, "hard_negatives": 12,
               "dark_flagged": 2, "rule": {"threshold": 0.75, "min_fp_ratio": 0.001, "min_area_px": 500},
               "seconds": 4.2, "hard_negatives_table": "/o/hard_negatives.parquet",
               "errors": [{"path": "/i/x.png", "error": "cannot decode the image"}]}
    assert format_summary(summary).splitlines() == [
        "# Scan -> /o", "", "- images: 60 (59 scanned, 1 errored) in 4.2 s",
        "- flagged: 13 (more than 0.1% of the pixels at probability >= 0.75, a region of >= 500 px)",
        "- hard negatives: 12 (2 dark), worst first -> /o/hard_negatives.parquet",
        "", "| path | error |", "|---|---|", "| /i/x.png | cannot decode the image |"]
