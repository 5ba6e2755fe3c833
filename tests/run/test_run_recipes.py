"""Every shipped run recipe (``configs/*``: demo and paper, one pair per family) validates as a run config, and
each demo recipe's ``--dry-run`` passes on tiny synthetic data (paper recipes would download ImageNet weights and
read paper-size images, so they are type-checked only). The family-specific dry runs, with their own data
checks, are in ``test_run_{mammo,us,comoto}.py``; this file holds the list every family must be in.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from breastssl.cli import app
from breastssl.run.config import load_run_config
from breastssl.run.recipes import families

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RECIPES = {  # family → (demo recipes, paper recipe)
    "dbt": (["dbt_selectivekd_demo.yaml"], "dbt_selectivekd_paper.yaml"),
    "mammo": (["mammo_self_training_run_demo.yaml"], "mammo_self_training_run_paper.yaml"),
    "us": (["us_mean_teacher_run_demo.yaml"], "us_mean_teacher_run_paper.yaml"),
    "comoto": (["comoto_run_teacher_demo.yaml", "comoto_run_student_demo.yaml"], "comoto_run_paper.yaml"),
}


def test_every_family_ships_a_demo_and_a_paper_recipe():
    assert set(RECIPES) == set(families())


@pytest.mark.parametrize("recipe", [r for demos, paper in RECIPES.values() for r in [*demos, paper]])
def test_recipe_validates(recipe):
    family = next(f for f, (demos, paper) in RECIPES.items() if recipe in [*demos, paper])
    cfg = load_run_config(CONFIGS / recipe)
    assert cfg.family == family
    assert cfg.train.device in ("auto", "cuda")  # a recipe never pins the CPU: it runs where the user has a GPU


def test_dbt_demo_dry_run(tmp_path):
    from breastssl.commands.synth import run_synth

    run_synth("dbt", tmp_path / "dbt", n=4, seed=0, fmt="npy", quiet=True)
    out = tmp_path / "run"
    sets = [f"data.manifest={tmp_path / 'dbt' / 'manifest.csv'}", "data.image_size=[32,24]", f"train.out_dir={out}"]
    for strategy in ("supervised", "selective_kd_weak"):
        extra = [] if strategy == "supervised" else [f"strategy.name={strategy}"]
        args = ["train", "-c", str(CONFIGS / "dbt_selectivekd_demo.yaml"), "--dry-run"]
        if strategy != "supervised":  # a KD student needs its teacher: a dry run reads it, trains nothing
            teacher = tmp_path / "teacher"
            done = runner_train(sets, teacher)
            assert done.exit_code == 0, done.output
            extra.append(f"strategy.teacher_checkpoint={teacher}")
        result = CliRunner().invoke(app, [*args, *[a for s in [*sets, *extra] for a in ("--set", s)]])
        assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        assert "dry run" in result.output and not out.exists()


def runner_train(sets: list[str], out: Path):
    items = [*sets[:-1], f"train.out_dir={out}", "train.steps=1", "train.progress=false", "data.test_split=train"]
    args = ["train", "-c", str(CONFIGS / "dbt_selectivekd_demo.yaml")]
    return CliRunner().invoke(app, [*args, *[a for s in items for a in ("--set", s)]])


def test_strategies_command_lists_every_registered_strategy():
    from breastssl.strategies import list_strategies

    result = CliRunner().invoke(app, ["strategies"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in list_strategies():
        assert name in result.output
