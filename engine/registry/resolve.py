"""Local files for models named by a path or by the MLflow registry (`models:/<name>@<alias>`,
`models:/<name>/<version>`): a registered Quarry model's weights file, downloaded once."""

from __future__ import annotations

from pathlib import Path

from engine.config import ConfigError


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """(name, alias, version) of models:/name@alias or models:/name/version."""
    rest = uri[len("models:/"):]
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return name, alias, None
    name, _, version = rest.partition("/")
    return name, None, version or None


def registered_version(tracking_uri: str, uri: str):
    """The ModelVersion a models:/ URI names, or None when the alias or version does not exist."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name, alias, version = parse_model_uri(uri)
    client = MlflowClient(tracking_uri)
    try:
        return client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        return None


def weights_of(tracking_uri: str, version, cache_dir: Path) -> Path:
    """The weights file of a registered Quarry model version, downloaded under cache_dir."""
    import mlflow

    from engine.tracking import set_tracking_uri

    set_tracking_uri(tracking_uri)
    target = Path(cache_dir) / f"{version.name}-v{version.version}"
    if not target.exists():
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(target))
    found = sorted(p for p in target.rglob("artifacts/*") if p.is_file())
    if not found:
        raise ConfigError(f"models:/{version.name}/{version.version} holds no weights file (not a Quarry model?)")
    return found[0]


def resolve_model(source: str, tracking_uri: str | None, cache_dir: Path) -> tuple[Path, dict]:
    """(local weights file, what it is) for a path or a models:/ URI."""
    if not source.startswith("models:/"):
        if not Path(source).is_file():
            raise ConfigError(f"model {source!r}: no such file")
        return Path(source), {"source": source}
    if tracking_uri is None:
        raise ConfigError(f"model {source!r}: a registry URI needs tracking (tracking.enabled / tracking_uri)")
    version = registered_version(tracking_uri, source)
    if version is None:
        raise ConfigError(f"model {source!r}: no such registered model, alias or version in {tracking_uri}")
    return weights_of(tracking_uri, version, cache_dir), {"source": source, "name": version.name,
                                                          "version": int(version.version)}
