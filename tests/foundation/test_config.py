"""Typed config: YAML + dotted overrides; unknown or mistyped keys are errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from breastssl.config import Section, apply_overrides, load_config, save_config
from breastssl.errors import ConfigError


class Optim(Section):
    lr: float = 0.1
    momentum: float = 0.9


class Run(Section):
    name: str = "x"
    steps: int = 10
    optim: Optim = Optim()


def test_defaults_yaml_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 20\noptim:\n  lr: 0.5\n")
    cfg = load_config(Run, path, ["optim.momentum=0.8", "name=abc"])
    assert (cfg.steps, cfg.optim.lr, cfg.optim.momentum, cfg.name) == (20, 0.5, 0.8, "abc")


def test_base_inheritance(tmp_path):
    (tmp_path / "base.yaml").write_text("steps: 5\noptim:\n  lr: 0.2\n  momentum: 0.5\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\noptim:\n  lr: 0.3\n")
    cfg = load_config(Run, tmp_path / "child.yaml")
    assert (cfg.steps, cfg.optim.lr, cfg.optim.momentum) == (5, 0.3, 0.5)


def test_unknown_key_names_it_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(Run, None, ["optim.lrr=0.1"])
    msg = str(err.value)
    assert "optim.lrr" in msg and "did you mean 'optim.lr'" in msg


def test_mistyped_value_names_key():
    with pytest.raises(ConfigError, match="steps"):
        load_config(Run, None, ["steps=many"])


def test_override_syntax_errors():
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides({}, ["noequals"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 3}, ["steps.x=1"])


def test_missing_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Run, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Run, bad)


def test_save_resolved_roundtrip(tmp_path):
    cfg = load_config(Run, None, ["optim.lr=0.25"])
    save_config(cfg, tmp_path / "resolved.yaml")
    data = yaml.safe_load((tmp_path / "resolved.yaml").read_text())
    assert data == {"name": "x", "steps": 10, "optim": {"lr": 0.25, "momentum": 0.9}}
    assert load_config(Run, tmp_path / "resolved.yaml") == cfg


class Synth(Section):
    contrast: dict[str, tuple[float, float]] = {"malignant": (0.1, 0.2), "benign": (0.3, 0.4)}
    sites: dict[str, dict[str, float]] = {"a": {"gain": 1.0, "depth": 2.0}}


def test_dotted_override_keeps_other_keys_of_a_dict_default():
    cfg = load_config(Synth, None, ["contrast.malignant=[0.5, 0.6]", "sites.a.gain=3"])
    assert cfg.contrast == {"malignant": (0.5, 0.6), "benign": (0.3, 0.4)}
    assert cfg.sites == {"a": {"gain": 3.0, "depth": 2.0}}


def test_yaml_mapping_still_replaces_a_dict(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("contrast:\n  malignant: [0.5, 0.6]\n")
    assert load_config(Synth, path).contrast == {"malignant": (0.5, 0.6)}
