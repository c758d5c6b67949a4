"""The machine a run's figures were computed on.

On the CPU, torch (ATen), oneDNN and MKL each pick their kernels by the instruction set the
processor offers (AVX2, AVX-512, ...), and kernels of different widths add in different orders:
the same seed trains to other weights on another processor, and the demo prints other figures
(docs/demo.md, "Figures by machine"). Runs record the processor so figures can be compared.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The processor's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the platform's guess."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """cpu, cores, the widest instruction set torch's kernels use here, torch's version."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch": torch.__version__, "platform": platform.platform()}
