"""MLflow helpers. Nothing happens at import; every job passes its tracking URI explicitly."""

from __future__ import annotations

import logging
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("quarry.tracking")


def resolve_tracking_uri(configured: str | None, default_dir: Path) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else SQLite in `default_dir`."""
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    Path(default_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(default_dir).resolve() / 'mlflow.db'}"


def git_revision() -> str | None:
    try:
        root = Path(__file__).resolve().parents[1]
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"} for MLflow params (values truncated to MLflow's limit)."""
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


@contextmanager
def mlflow_run(tracking_uri: str, experiment: str, run_name: str, config: dict, tags: dict | None = None) -> Iterator:
    """Start an MLflow run with the resolved config as params and the git revision as a tag."""
    from engine.offline import enable_offline

    enable_offline()
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    all_tags = {"quarry.git_revision": git_revision() or "unknown", **(tags or {})}
    with mlflow.start_run(run_name=run_name, tags=all_tags) as run:
        mlflow.log_params(flatten(config))
        log.info("MLflow run %s in %s (%s)", run.info.run_id, experiment, tracking_uri)
        yield run
