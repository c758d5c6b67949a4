"""Typed job configs: YAML files plus dotted `key=value` overrides, validated before any work.

Every job has one pydantic model (a subclass of `Section`). Unknown keys, wrong types and
out-of-range values raise `ConfigError` with the dotted key, the value given and what was
expected, so a user never sees a traceback from deep inside a library.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from engine.storage import is_remote

T = TypeVar("T", bound="Section")


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and the value."""


class Section(BaseModel):
    """Base of every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _no_blank_value(cls, value: Any) -> Any:
        """`out_dir=` (an unset shell variable) would be `Path("")`, the current folder: mining
        read every video under it and a build wrote its set there. No key of Quarry's takes an
        empty string, so it is an error; null unsets a key that allows none."""
        if isinstance(value, str) and not value.strip():
            raise ValueError("an empty value (write null to unset a key that takes none)")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _no_store_uri_in_a_local_path(cls, value: Any, info: ValidationInfo) -> Any:
        """A job's own object-store keys hold mirror paths by now (engine/staging.py), so a URI
        left in a path key is one the job does not read from a store: say so, rather than let
        `Path` fold `s3://b/k` into a local `s3:/b/k` that is then "not found"."""
        if isinstance(value, str) and is_remote(value) and _is_path_field(cls.model_fields[info.field_name].annotation):
            raise ValueError("this key takes a local path, not an object-store URI (the keys a job reads from "
                             "or writes to a store: docs/cluster.md#object-storage)")
        return value


def _is_path_field(annotation: Any) -> bool:
    """`Path` or `Path | None`; a field that also takes a plain string (a URI on purpose) is not."""
    kinds = set(get_args(annotation)) or {annotation}
    return Path in kinds and str not in kinds


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into (["a", "b", "c"], value) with the value parsed as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r}: expected dotted.key=value, e.g. mining.stride=4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc.problem})") from None
    return key.split("."), value


def set_dotted(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    """Set `data[path[0]][path[1]]... = value` in place, creating missing mappings; `what` names
    the setting in the error when a prefix of the path is a value, not a section."""
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.get(part)
        if child is None:  # a missing key, or an optional section left empty
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{what}: {'.'.join(path[: i + 1])} is a value ({child!r}), not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted override set (intermediate mappings created)."""
    merged = json.loads(json.dumps(data, default=str))
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(merged, path, value, f"override {text!r}")
    return merged


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def _within(key: str, msg: str) -> str:
    """A section's rule message (`scaling.x=1 with ...` or `objective.metric = ...`) under the
    dotted `key` of that section in the whole config (`train.scaling`, `train`)."""
    parent, _, last = key.rpartition(".")
    if not key or msg.startswith(key):
        return msg
    return f"{parent}.{msg}" if parent and msg.startswith(last) else f"{key}: {msg}"


def describe_errors(error: ValidationError, source: str) -> str:
    """One line per problem: `<source>: <dotted.key> = <value>: <what was expected>`."""
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if not key or item["type"] == "value_error" and isinstance(item["input"], dict):
            # a rule across keys: its message names them; the section's whole input would only bury it.
            # It names them from its own section down, so the path above that section goes first.
            lines.append(f"{source}: {_within(key, item['msg'].removeprefix('Value error, '))}")
        elif item["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key} (value {item['input']!r})")
        elif item["type"] == "missing":
            lines.append(f"{source}: missing required key {key}")
        else:
            lines.append(f"{source}: {key} = {item['input']!r}: {item['msg'].removeprefix('Value error, ')}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The config model behind a field's annotation (`Section`, or `Section | None`), else None."""
    for candidate in (annotation, *get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def merge_config_data(model: type[BaseModel], base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`base` with `update` laid over it: sections (nested config models) merge key by key,
    every other value (numbers, strings, lists, free-form mappings) is replaced whole.

    Merging into the parent's *dumped defaults*, not into `{}`, is what keeps a job's own
    defaults: pydantic would rebuild a partly given section from its class defaults, so
    `scoring.detector.imgsz=320` would silently reset `scoring.detector.source`.
    """
    merged = dict(base)
    for key, value in update.items():
        field = model.model_fields.get(key)
        section = _section_type(field.annotation) if field is not None else None
        if section is not None and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_config_data(section, merged[key], value)
        else:
            merged[key] = value  # unknown keys go through, so validation names them
    return merged


def default_data(model: type[T]) -> dict[str, Any]:
    """The model's defaults as plain data (what a config file and overrides are laid over)."""
    return model().model_dump(mode="json")


def load_config(model: type[T], path: Path | str | None = None, overrides: list[str] | None = None,
                prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> T:
    """Build a `model` from its defaults, then an optional YAML file, then dotted overrides;
    raise ConfigError. Each layer changes only the keys it names. A model with `PROFILES`
    (name -> overrides) and a `profile` key gets that profile's overrides laid over its
    defaults, under the file and the overrides. `prepare` may rewrite the layered data just
    before validation (the object-store mirror replaces remote URIs by local paths there)."""
    file_data = read_yaml(Path(path)) if path else {}

    def layered(profile: list[str]) -> dict[str, Any]:
        data = apply_overrides(default_data(model), profile)
        return apply_overrides(merge_config_data(model, data, file_data), list(overrides or []))

    data = layered([])
    profiles = getattr(model, "PROFILES", {})
    if profiles and data.get("profile") is not None:
        if data["profile"] not in profiles:
            raise ConfigError(f"profile = {data['profile']!r}: expected one of {sorted(profiles)}")
        data = layered(profiles[data["profile"]])  # the profile lies between the defaults and the user's keys
    source = str(path) if path else "config"
    if overrides:
        source += " + overrides"
    try:
        return model.model_validate(prepare(data) if prepare else data)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, source)) from None


def config_to_dict(config: Section) -> dict[str, Any]:
    """The resolved config as plain JSON-compatible data."""
    return config.model_dump(mode="json")


def config_hash(config: Section) -> str:
    """A short stable hash of the resolved config, for provenance columns."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def write_resolved_config(config: Section, out_dir: Path, name: str = "config.resolved.yaml") -> Path:
    """Write the resolved config next to a job's outputs (atomically) and return its path."""
    from engine.storage import atomic_write_text

    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    return atomic_write_text(Path(out_dir) / name, text)
