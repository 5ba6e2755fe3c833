"""Configs that used to crash, hang or be silently misread (issue 17) are config errors naming the file or key.

``_base_`` cycles and non-path values, deep nesting, alias bombs, duplicate keys, wrongly typed scalars
(``steps: true``), non-finite floats and out-of-range image sizes and seeds: each is a :class:`ConfigError`, and
through ``breastssl train`` an exit status of 2 with the key named, no traceback and no run folder.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from breastssl.cli import main
from breastssl.config import MAX_DEPTH, Section, load_config, read_yaml
from breastssl.errors import ConfigError


class Optim(Section):
    lr: float = 0.1
    nesterov: bool = False


class Run(Section):
    steps: int = 10
    size: tuple[int, int] = (8, 8)
    optim: Optim = Optim()
    mult: dict[str, float] = {}


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _config_error(path: Path, *overrides: str, cls: type = Run) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(cls, path, list(overrides))
    return str(err.value)


def _cli(capsys, path: Path | None, *sets: str) -> str:
    """``breastssl train -c PATH --set ...`` must exit 2 with a message and no traceback; returns the message."""
    args = ["train", "-c", str(path), *(a for s in sets for a in ("--set", s))]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err, err
    return err


# ---- _base_ -----------------------------------------------------------------------------------------------------


def test_base_cycles_and_self_references(tmp_path, capsys):
    _write(tmp_path, "_base_: b.yaml\nsteps: 1\n", "a.yaml")
    _write(tmp_path, "_base_: a.yaml\n", "b.yaml")
    assert "its _base_ links form a cycle (a.yaml -> b.yaml -> a.yaml)" in _config_error(tmp_path / "a.yaml")
    me = _write(tmp_path, "_base_: self.yaml\n", "self.yaml")
    assert "cycle (self.yaml -> self.yaml)" in _config_error(me)
    assert "cycle" in _cli(capsys, tmp_path / "a.yaml")


@pytest.mark.parametrize("value", ["[a.yaml, b.yaml]", "3", "''", "{x: 1}"])
def test_base_must_be_one_path(tmp_path, value):
    msg = _config_error(_write(tmp_path, f"_base_: {value}\n"))
    assert "c.yaml: _base_ must be one file name (a path relative to this file)" in msg


def test_a_long_base_chain_is_cut(tmp_path):
    for i in range(20):
        _write(tmp_path, f"_base_: c{i + 1}.yaml\n", f"c{i}.yaml")
    _write(tmp_path, "steps: 3\n", "c20.yaml")
    assert "more than 16 _base_ files in a chain" in _config_error(tmp_path / "c0.yaml")


# ---- YAML that would crash or hang the parser ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["x: " + "[" * 5000 + "]" * 5000, "x:" + " {a:" * 5000 + " 1" + "}" * 5000], ids=["lists", "mappings"]
)
def test_deep_nesting(tmp_path, capsys, text):
    path = _write(tmp_path, text)
    assert f"c.yaml: nested more than {MAX_DEPTH} levels deep (line 1)" in _config_error(path)
    assert "nested more than" in _cli(capsys, path)
    assert "override steps: nested more than" in _config_error(None, "steps=" + "[" * 5000 + "]" * 5000)


def test_billion_laughs_is_refused_quickly(tmp_path, capsys):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    path = _write(tmp_path, "\n".join(lines) + "\n")
    start = time.perf_counter()
    assert "expands to more than 100000 values through aliases" in _config_error(path)
    assert "billion laughs" in _cli(capsys, path)
    assert time.perf_counter() - start < 5


def test_alias_inside_its_own_anchor(tmp_path):
    assert "an alias refers to its own anchor (line 1)" in _config_error(_write(tmp_path, "x: &x [1, *x]\n"))


def test_duplicate_keys_name_the_key_and_lines(tmp_path, capsys):
    path = _write(tmp_path, "steps: 3\noptim:\n  lr: 0.1\n  lr: 0.2\n")
    msg = _config_error(path)
    assert "duplicate key 'lr' at line 4 (first at line 3)" in msg
    assert "duplicate key 'lr'" in _cli(capsys, path)


def test_merge_keys_anchors_and_exponent_floats_still_work(tmp_path):
    text = "base: &b {lr: 1e-4, nesterov: true}\noptim:\n  <<: *b\n  lr: 2.5E-3\n"
    assert read_yaml(_write(tmp_path, text))["optim"] == {"lr": 0.0025, "nesterov": True}
    cfg = load_config(Run, _write(tmp_path, "optim: {lr: 1e-4}\nmult: {head: 1}\n"), ["steps=2"])
    assert cfg.optim.lr == 1e-4 and cfg.mult == {"head": 1.0} and isinstance(cfg.mult["head"], float)


def test_unreadable_config_files(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00steps: 1")
    assert "is not UTF-8 text" in _config_error(tmp_path / "bin.yaml")
    (tmp_path / "dir.yaml").mkdir()
    assert "does not exist" in _config_error(tmp_path / "dir.yaml")
    assert "cannot be read" in _config_error(tmp_path / ("n" * 300 + ".yaml"))


# ---- strict scalar types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("steps: true", "steps: should be a whole number (got True)"),
        ("steps: 2.0", "steps: should be a whole number (got 2.0)"),
        ("steps: '5'", "steps: should be a whole number (got '5')"),
        ("optim: {lr: true}", "optim.lr: should be a number (got True)"),
        ("optim: {lr: '0.1'}", "optim.lr: should be a number (got '0.1')"),
        ("optim: {nesterov: 1}", "optim.nesterov: should be true or false (got 1)"),
        ("size: [true, 5]", "size.0: should be a whole number (got True)"),
        ("mult: {head: false}", "mult.head: should be a number (got False)"),
    ],
)
def test_scalars_are_strictly_typed(tmp_path, text, expected):
    assert expected in _config_error(_write(tmp_path, text + "\n"))


def test_an_int_is_a_valid_float(tmp_path):
    assert load_config(Run, _write(tmp_path, "optim: {lr: 1}\n")).optim.lr == 1.0


def test_strict_errors_are_listed_with_the_others(tmp_path):
    msg = _config_error(_write(tmp_path, "steps: true\noptim: {lr: .nan, lrr: 1}\n"))
    assert "steps: should be a whole number" in msg and "optim.lr: Input should be a finite number" in msg
    assert "unknown key 'optim.lrr'" in msg


# ---- the run config's ranges, through `breastssl train` -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["train.steps=true"], "train.steps: should be a whole number (got True)"),
        (["train.optim.lr=.inf"], "train.optim.lr: Input should be a finite number"),
        (["train.optim.lr=.nan"], "train.optim.lr: Input should be a finite number"),
        (["train.optim.lr=-.inf"], "train.optim.lr: Input should be a finite number"),
        (["data.image_size=[0, 0]"], "data.image_size.0: Input should be greater than or equal to 16"),
        (["data.image_size=[-80, 64]"], "data.image_size.0: Input should be greater than or equal to 16"),
        (["data.image_size=[100000, 100000]"], "data.image_size.1: Input should be less than or equal to 8192"),
        (["train.seed=-1"], "train.seed: Input should be greater than or equal to 0"),
        (["train.seed=99999999999"], "train.seed: Input should be less than or equal to 4294967295"),
        (["train.steps=100000000000000000000"], "train.steps: Input should be less than or equal to 1000000000"),
        (["train.optim.betas=[0.9, 1.5]"], "train.optim.betas.1: Input should be less than 1"),
        (["train.optim.lr_mult={head: -1}"], "train.optim.lr_mult.head: Input should be greater than or equal to 0"),
        (["strategy.name=comoto_teacher", "data.image_size=[8, 8]"], "data.image_size.0: Input should be greater"),
        (["strategy.name=self_training", "data.image_size=[96, 0]"], "data.image_size.1: Input should be greater"),
        (["strategy.name=mean_teacher", "detector.min_size=0"], "detector.min_size: Input should be greater"),
    ],
)
def test_run_config_values_are_checked_by_key(tmp_path, capsys, sets, expected):
    recipe = Path(__file__).resolve().parents[2] / "configs" / "dbt_selectivekd_demo.yaml"
    out = tmp_path / "never"
    err = _cli(capsys, recipe, *sets, f"train.out_dir={out}")
    assert expected in err, err
    assert not out.exists()
