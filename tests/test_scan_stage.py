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
