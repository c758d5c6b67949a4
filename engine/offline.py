"""The offline switches, set once per process before any model library is imported.

Quarry never reaches a model hub, a download server or a telemetry endpoint. Each library
has its own switch; Ultralytics needs three extra measures (ENVIRONMENT.md):
- a config dir the run owns (it writes settings there instead of ~/.config),
- its integrations (hub sync, MLflow, Ray Tune, W&B ...) switched off in its settings,
- a local Arial.ttf, which its plotting code otherwise downloads during `train`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Environment variables read by the libraries at import or first use.
OFFLINE_ENV: dict[str, str] = {
    "YOLO_OFFLINE": "1",  # Ultralytics: no online checks, no asset downloads
    "HF_HUB_OFFLINE": "1",  # open_clip / timm pretrained tags: use the cache or fail fast
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "NO_ALBUMENTATIONS_UPDATE": "1",  # albumentations' PyPI version check
    "RAY_USAGE_STATS_ENABLED": "0",
    "WANDB_MODE": "disabled",
}

# Ultralytics settings that would otherwise start integrations or network calls.
ULTRALYTICS_SETTINGS_OFF = {
    "sync": False,
    "hub": False,
    "mlflow": False,
    "raytune": False,
    "wandb": False,
    "tensorboard": False,
    "clearml": False,
    "comet": False,
    "dvc": False,
    "neptune": False,
}

_ultralytics_configured = False


def default_cache_dir() -> Path:
    """Where Quarry keeps per-user state such as the Ultralytics config dir."""
    return Path(os.environ.get("QUARRY_CACHE_DIR", Path.home() / ".cache" / "quarry"))


def enable_offline(cache_dir: Path | None = None) -> dict[str, str]:
    """Set every offline switch in this process's environment and return them.

    Idempotent. Child processes (Ray workers, Ultralytics dataloader workers) inherit
    the environment; Ray runtime envs should pass the returned mapping explicitly.
    """
    os.environ.update(OFFLINE_ENV)
    # A config dir the user set is theirs to keep; otherwise the run owns one.
    default_yolo_dir = (cache_dir or default_cache_dir()) / "ultralytics"
    yolo_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(default_yolo_dir)))
    _install_plot_font(yolo_dir)
    return {**OFFLINE_ENV, "YOLO_CONFIG_DIR": str(yolo_dir)}


def _install_plot_font(yolo_dir: Path) -> None:
    """Give Ultralytics a local Arial.ttf so its plotting never downloads one.

    `ultralytics.utils.checks.check_font` looks in `USER_CONFIG_DIR`, which is
    `<YOLO_CONFIG_DIR>/Ultralytics`, before it tries a download.
    """
    import matplotlib  # a dependency of Ultralytics; ships DejaVuSans

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    folder = yolo_dir / "Ultralytics"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = folder / name
        if not target.exists():
            folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(f".{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)


def configure_ultralytics() -> None:
    """Switch off Ultralytics' integrations; call after `enable_offline`, before training."""
    global _ultralytics_configured
    if _ultralytics_configured:
        return
    enable_offline()
    from ultralytics import settings

    wanted = {k: v for k, v in ULTRALYTICS_SETTINGS_OFF.items() if k in settings and settings[k] != v}
    if wanted:
        settings.update(wanted)
    _ultralytics_configured = True
