"""bench/gpu.py renders its committed H100 result (the GPU run cannot be repeated without a GPU)."""

import json
from pathlib import Path

from bench.gpu import table_markdown

RESULT = Path(__file__).resolve().parents[1] / "bench" / "results" / "gpu-20261124-110755.json"


def test_gpu_table_has_every_variant_and_job():
    table = table_markdown(json.loads(RESULT.read_text()), "r.json")
    rows = [line for line in table.splitlines() if line.startswith("| fp")]
    assert [row.split(" | ")[:2] for row in rows] == [["| fp32", "actor"], ["| fp32", "tasks"], ["| fp16", "actor"],
                                                      ["| fp16", "tasks"]]
    assert "| 251.8 | 89.5 (367.3) | **1.459** | 0.8 |" in rows[0]  # steady 367.3 / model only 251.8
    assert "`quarry train`, 2 workers x 0.5 GPU | refused by the config check (exit 2)" in table
    assert "import torch 4.03" in table
