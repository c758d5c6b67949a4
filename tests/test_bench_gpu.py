"""bench/gpu.py renders its committed H100 result (the GPU run cannot be repeated without a GPU)."""

import json
from pathlib import Path

from bench.gpu import table_markdown

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def test_gpu_table_has_every_variant_and_job():
    report = {**json.loads((RESULTS / "gpu-20261124-110755.json").read_text()),
              **json.loads((RESULTS / "gpu-20261124-111522.json").read_text())}  # as --render merges them
    table = table_markdown(report, "r.json")
    rows = [line for line in table.splitlines() if line.startswith("| fp")]
    assert [row.split(" | ")[:2] for row in rows] == [["| fp32", "actor"], ["| fp32", "tasks"], ["| fp16", "actor"],
                                                      ["| fp16", "tasks"]]
    assert "| 251.8 | 89.5 (367.3) | **1.459** | 0.8 |" in rows[0]  # steady 367.3 / model only 251.8
    assert "`quarry train`, 2 workers x 0.5 GPU | refused by the config check (exit 2)" in table
    assert "import torch 4.03" in table
    assert "same box count on 99.6% of frames" in table  # 7 of 1,935 frames
