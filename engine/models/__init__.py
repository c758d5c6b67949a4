"""Offline model builders: Ultralytics detectors, open_clip encoders, smp segmenters.

Each builder sets the offline switches before importing its library, accepts only local
paths or architectures, and raises `ModelError` with the offending value otherwise.
"""


from contextlib import contextmanager


class ModelError(ValueError):
    """A model could not be built from what the user named; the message says why."""


def not_plain_weights(path, exc: Exception) -> ModelError:
    """A checkpoint that `torch.load(weights_only=True)` refused: it pickles more than tensors
    (code could run on load), so Quarry does not open it."""
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ModelError(f"{path}: refused: it holds more than weights and is loaded only with "
                      f"torch.load(weights_only=True) ({reason[:160]})")


def resolve_device(device: str) -> str:
    """`auto` means the first CUDA device when there is one, else the CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


INIT_SEED = 0  # random-weight models are seeded, so every actor and every run builds the same one


@contextmanager
def seeded_init(seed: int = INIT_SEED):
    """Build a model from a fixed torch seed without touching the caller's RNG."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
