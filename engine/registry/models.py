"""Log a trained model to an MLflow run and register it as a new version of a named model,
with tags saying what it was trained from. Aliases (`champion`, `challenger`), never stages."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("quarry.registry")


def log_and_register(run_id: str, tracking_uri: str, kind: str, weights: Path, model_name: str | None,
                     model_config: dict, tags: dict[str, str]) -> dict:
    """Log `weights` as a pyfunc model (kind: detector | segmenter) in `run_id`; register a new
    version of `model_name` (when given) tagged with `tags`. Returns name, version, model URI."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from engine.registry.pyfunc import DetectorModel, SegmenterModel
    from engine.tracking import set_tracking_uri

    set_tracking_uri(tracking_uri)
    python_model = DetectorModel() if kind == "detector" else SegmenterModel()
    with mlflow.start_run(run_id=run_id):
        # requirements named here: inferring them would import and probe the environment
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model, artifacts={"weights": str(weights)},
                                       model_config=model_config, pip_requirements=_requirements())
    out = {"model_uri": info.model_uri, "run_id": run_id}
    if model_name:
        version = mlflow.register_model(info.model_uri, model_name)
        client = MlflowClient(tracking_uri)
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version.version, key, str(value))
        out.update(name=model_name, version=int(version.version))
        log.info("registered %s version %s", model_name, version.version)
    return out


def _requirements() -> list[str]:
    from engine.mining.identity import package_version

    return [f"{name}=={package_version(name)}" for name in ("torch", "ultralytics", "segmentation-models-pytorch",
                                                             "mlflow", "pandas") if package_version(name) != "unknown"]


def register_as(tracking_uri: str, experiment: str, kind: str, weights: Path, model_name: str, alias: str,
                tags: dict[str, str]) -> dict:
    """Register a weights file (e.g. the base model in service) in a new MLflow run of
    `experiment` and point `alias` at the new version."""
    from mlflow.tracking import MlflowClient

    from engine.tracking import mlflow_run

    with mlflow_run(tracking_uri, experiment, f"register-{model_name}-{alias}", {"weights": str(weights)}, tags) as run:
        run_id = run.info.run_id
    registered = log_and_register(run_id, tracking_uri, kind, weights, model_name, {}, tags)
    MlflowClient(tracking_uri).set_registered_model_alias(model_name, alias, registered["version"])
    return {**registered, "alias": alias}
