"""MLflow helpers. Nothing happens at import; every job passes its tracking URI explicitly."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pydantic import Field

from engine.config import Section

log = logging.getLogger("quarry.tracking")


class TrackingConfig(Section):
    """Where a job's MLflow run goes."""

    enabled: bool = True
    tracking_uri: str | None = Field(None, description=(
        "MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<out_dir>/mlflow.db with artifacts beside it)"))
    experiment: str = Field("quarry", description="MLflow experiment name")


# Jobs that read or write the model registry (train, tune, evaluate, promote) share one store by
# default, so that a model `quarry tune` registers is the one `quarry promote` finds.
REGISTRY_STORE_DIR = Path("runs")


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


def artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside an SQLite store (`<db folder>/mlartifacts/
    <experiment>`), never MLflow's default `./mlruns` of the current directory (under `ray job
    submit` that is Ray's temporary copy of the working dir). None for a tracking server: its
    own artifact store decides."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return (db.parent / "mlartifacts" / experiment).resolve().as_uri()
    return None


def set_tracking_uri(tracking_uri: str) -> None:
    """mlflow.set_tracking_uri without its side effect on the environment: MLflow 3 also sets
    $MLFLOW_TRACKING_URI, which the next job of the same process (the demo, a test) or a job it
    launches would then take for the user's choice."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def use_experiment(tracking_uri: str, experiment: str) -> str:
    """Set the tracking URI and the experiment, creating it with an explicit artifact
    location; return its id."""
    import mlflow

    set_tracking_uri(tracking_uri)
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        try:
            experiment_id = mlflow.create_experiment(experiment, artifact_location=artifact_location(tracking_uri, experiment))
        except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent job
            experiment_id = mlflow.get_experiment_by_name(experiment).experiment_id
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def mlflow_run(tracking_uri: str, experiment: str, run_name: str, config: dict, tags: dict | None = None,
               nested: bool = False) -> Iterator:
    """Start an MLflow run with the resolved config as params and the git revision as a tag."""
    from engine.offline import enable_offline

    enable_offline()
    import mlflow

    if not nested:
        use_experiment(tracking_uri, experiment)
    all_tags = {"quarry.git_revision": git_revision() or "unknown", **(tags or {})}
    with mlflow.start_run(run_name=run_name, tags=all_tags, nested=nested) as run:
        mlflow.log_params(flatten(config))
        log.info("MLflow run %s in %s (%s)", run.info.run_id, experiment, tracking_uri)
        yield run


def log_job_run(tracking: TrackingConfig, out_dir: Path, job: str, config_hash: str, config, metrics: dict,
                artifacts: list[Path]) -> dict:
    """One MLflow run for a finished job: resolved config as params, `metrics`, the existing
    files of `artifacts`; returns {"mlflow_run_id", "tracking_uri"} for the job's summary."""
    import mlflow

    uri = resolve_tracking_uri(tracking.tracking_uri, out_dir)
    with mlflow_run(uri, tracking.experiment, f"{job}-{time.strftime('%Y%m%d-%H%M%S')}", config.model_dump(mode="json"),
                    {"quarry.job": job, "quarry.config_hash": config_hash}) as run:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
        for path in artifacts:
            if Path(path).is_file():
                mlflow.log_artifact(str(path))
    return {"mlflow_run_id": run.info.run_id, "tracking_uri": uri}
