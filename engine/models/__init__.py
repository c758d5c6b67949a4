"""Offline model builders: Ultralytics detectors, open_clip encoders, smp segmenters.

Each builder sets the offline switches before importing its library, accepts only local
paths or architectures, and raises `ModelError` with the offending value otherwise.
"""


class ModelError(ValueError):
    """A model could not be built from what the user named; the message says why."""


def resolve_device(device: str) -> str:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
