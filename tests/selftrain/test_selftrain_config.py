"""The mammography experiment takes a YAML config like the others; flags typed on the command line override it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.core import ParameterSource

from breastssl.errors import ConfigError
from breastssl.experiments._selftrain_config import resolve_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class Ctx:
    """What resolve_config asks of typer's context: where each parameter's value came from."""

    def __init__(self, typed: set[str]) -> None:
        self.typed = typed

    def get_parameter_source(self, name: str) -> ParameterSource:
        return ParameterSource.COMMANDLINE if name in self.typed else ParameterSource.DEFAULT


def test_file_then_set_then_typed_flags():
    flags = {"seeds": "7", "n_boot": 1000, "labeller": "tfidf", "out": Path("runs/x")}
    cfg = resolve_config(Ctx({"seeds"}), CONFIGS / "mammo_self_training_powered.yaml", ["n_boot=50"], flags)
    assert cfg.seeds == "7"  # typed on the command line: wins over the file's "0,1,2,3,4"
    assert cfg.n_boot == 50 and cfg.labeller == "minilm" and cfg.out == "runs/mammo_self_training_powered"
    assert cfg.tune and cfg.test_exams == 1200 and cfg.val_exams == 400


def test_flags_alone_and_unknown_keys():
    cfg = resolve_config(Ctx(set()), None, [], {"seeds": "", "n_exams": 200})
    assert cfg.n_exams == 200 and cfg.seeds == ""
    with pytest.raises(ConfigError, match="tune_cel"):
        resolve_config(Ctx(set()), None, ["tune_cel=x"], {})
