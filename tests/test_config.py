"""Typed configs: YAML + dotted overrides, and clear errors naming key, value and expectation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.config import ConfigError, apply_overrides, config_hash, load_config, parse_override, write_resolved_config
from engine.synth.config import SynthConfig


def test_parse_override_types():
    assert parse_override("a.b=4") == (["a", "b"], 4)
    assert parse_override("a=0.5") == (["a"], 0.5)
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=runs/x y") == (["a"], "runs/x y")
    assert parse_override("a=") == (["a"], "")


@pytest.mark.parametrize("bad", ["novalue", "=3", "a..b=1", ".a=1"])
def test_parse_override_rejects_malformed(bad):
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override(bad)


def test_apply_overrides_nests_and_does_not_mutate():
    base = {"a": {"b": 1}}
    merged = apply_overrides(base, ["a.c=2", "d.e.f=x"])
    assert merged == {"a": {"b": 1, "c": 2}, "d": {"e": {"f": "x"}}}
    assert base == {"a": {"b": 1}}


def test_override_into_a_value_is_an_error():
    with pytest.raises(ConfigError, match="seed is a value"):
        apply_overrides({"seed": 1}, ["seed.x=2"])


def test_yaml_plus_overrides(tmp_path: Path):
    path = tmp_path / "s.yaml"
    path.write_text("seed: 3\nvideos:\n  n_workzone: 2\n")
    cfg = load_config(SynthConfig, path, ["videos.fps=30", "out_dir=/tmp/x"])
    assert (cfg.seed, cfg.videos.n_workzone, cfg.videos.fps, cfg.out_dir) == (3, 2, 30, Path("/tmp/x"))
    assert cfg.videos.n_lookalike == SynthConfig().videos.n_lookalike


def test_unknown_key_names_the_key(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.n_work_zone=3"])
    assert "unknown key videos.n_work_zone" in str(err.value)


def test_wrong_type_names_key_value_and_expectation():
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.fps=fast"])
    text = str(err.value)
    assert "videos.fps = 'fast'" in text and "integer" in text


def test_out_of_range_value_is_an_error():
    with pytest.raises(ConfigError) as err:
        load_config(SynthConfig, None, ["videos.width_px=255", "detection.background_fraction=1.5"])
    text = str(err.value)
    assert "videos.width_px = 255" in text and "multiple of 2" in text
    assert "detection.background_fraction = 1.5" in text and "less than or equal to 1" in text


def test_missing_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(SynthConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(SynthConfig, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(SynthConfig, listy)


def test_resolved_config_round_trips(tmp_path: Path):
    cfg = load_config(SynthConfig, None, ["seed=11"])
    path = write_resolved_config(cfg, tmp_path)
    again = load_config(SynthConfig, path)
    assert again == cfg
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(SynthConfig, None, ["seed=12"])) != config_hash(cfg)
    assert yaml.safe_load(path.read_text())["seed"] == 11
