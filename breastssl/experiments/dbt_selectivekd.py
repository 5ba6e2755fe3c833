"""`breastssl experiment dbt-selectivekd`: the SelectiveKD paper's Table 1 (seed 000) on your DBT data.

Per seed: the Baseline (``supervised`` on the annotated slices) is trained first and becomes the teacher;
then KD, KD*, SelectiveKD and SelectiveKD* students distil from it. Every run is an ordinary
``breastssl train`` run (its own folder, checkpoints, predictions and metrics.json), scheduled by
``_runs.execute`` with ``jobs`` runs at a time. The report gives AUC with DeLong 95% CI per vendor and
overall, paired DeLong p-values against the Baseline and between the settings the paper compares,
mean ± SD over seeds, a seed ensemble, and the paper's four claims checked against the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import typer
from pydantic import Field

from ..config import Section
from ..errors import UserError
from ._dbt_tables import LABELS, STRATEGY

RUN_TAG = "dbt-selectivekd"


class SynthSpec(Section):
    """Synthetic DBT data generated into the recipe's manifest folder when that folder has no manifest."""

    n: int = Field(600, ge=4, description="exams")
    seed: int = 0


class DBTSelectiveKDConfig(Section):
    """Settings of the Table-1 experiment; every training detail comes from ``recipe`` (+ ``set``)."""

    out_dir: str = "runs/dbt_selectivekd"
    recipe: str = Field("configs/dbt_selectivekd_demo.yaml", description="a `breastssl train` config")
    set: list[str] = Field([], description="overrides applied to every run, e.g. train.steps=400")
    seeds: list[int] = [0, 1, 2]
    settings: list[str] = Field(list(LABELS), description=f"subset of {list(LABELS)}; baseline is always run")
    level: str = Field("breast", pattern="^(stack|breast|exam)$")
    annotated_vendors: list[str] = Field(["Hologic"], description="vendors with slice annotations (for the claims)")
    synth: SynthSpec | None = Field(default_factory=SynthSpec, description="null = never generate data")
    jobs: int = Field(1, ge=1, description="runs trained at the same time")
    threads: int = Field(1, ge=1, description="CPU threads per run")
    devices: list[str] = Field([], description="GPU ids handed to concurrent runs, e.g. ['0', '1']")


def ensure_data(recipe: str, overrides: list[str], synth: SynthSpec | None) -> None:
    """Generate synthetic DBT data where the recipe expects a manifest, if allowed and missing."""
    from ._runs import build_run_config

    manifest = Path(build_run_config(recipe, overrides).data.manifest)
    if manifest.is_file():
        return
    if synth is None:
        raise UserError(f"{manifest}: no manifest (set synth to generate synthetic data there)")
    from ..commands.synth import run_synth

    typer.echo(f"generating {synth.n} synthetic DBT exams into {manifest.parent} (seed {synth.seed})")
    run_synth("dbt", manifest.parent, n=synth.n, seed=synth.seed, fmt="npy", quiet=True)


def table1_specs(cfg: DBTSelectiveKDConfig, root: Path, extra: list[str] | None = None) -> list[Any]:
    """RunSpecs of every (seed, setting): the baseline of a seed is the teacher of its students."""
    from ._runs import RunSpec, build_run_config

    unknown = sorted(set(cfg.settings) - set(LABELS))
    if unknown:
        raise UserError(f"unknown settings {unknown}; choose from {list(LABELS)}")
    specs = []
    for seed in cfg.seeds:
        base_dir = root / f"seed{seed}" / "baseline"
        common = [*cfg.set, *(extra or []), f"train.seed={seed}", "train.progress=false"]
        for setting in ["baseline", *[s for s in cfg.settings if s != "baseline"]]:
            run_dir = root / f"seed{seed}" / setting
            sets = [*common, f"strategy.name={STRATEGY[setting]}", f"train.out_dir={run_dir}"]
            if setting != "baseline":
                sets.append(f"strategy.teacher_checkpoint={base_dir}")
            needs = [] if setting == "baseline" else [f"seed{seed}/baseline"]
            specs.append(RunSpec(f"seed{seed}/{setting}", build_run_config(cfg.recipe, sets), needs))
    return specs


def load_predictions(specs: list[Any], level: str) -> dict[tuple[int, str], pd.DataFrame]:
    """``predictions_<level>.csv`` of every finished run, keyed (seed, setting)."""
    out = {}
    for spec in specs:
        seed, setting = spec.name.split("/")[-2:]
        path = spec.out_dir / f"predictions_{level}.csv"
        if not path.is_file():
            raise UserError(f"run {spec.name} finished without {path}")
        out[(int(seed.removeprefix("seed")), setting)] = pd.read_csv(path, dtype={"exam_id": str, "image_id": str})
    return out


def analyse(preds: dict[tuple[int, str], pd.DataFrame], level: str, annotated: list[str]) -> dict[str, Any]:
    """Every table of the report from the prediction tables (see ``_dbt_tables``)."""
    from . import _dbt_tables as t

    aucs = t.auc_rows(preds)
    tests = t.pair_tests(preds, level)
    summ = t.summary(aucs, tests)
    ens = t.ensemble(preds, level) if len({s for s, _ in preds}) > 1 else {}
    return {
        "aucs": aucs,
        "tests": tests,
        "summary": summ,
        "ensemble_aucs": t.auc_rows(ens) if ens else pd.DataFrame(),
        "ensemble_tests": t.pair_tests(ens, level) if ens else pd.DataFrame(),
        "claims": t.claims(summ, annotated),
    }


def run_experiment(cfg: DBTSelectiveKDConfig, echo: Any = typer.echo) -> dict[str, Any]:
    """Train what is missing, then write results (CSV/JSON) and report.html into ``out_dir``."""
    from ._dbt_report import table1_html
    from ._runs import execute

    root = Path(cfg.out_dir)
    ensure_data(cfg.recipe, cfg.set, cfg.synth)
    specs = table1_specs(cfg, root)
    echo(f"{RUN_TAG}: {len(specs)} runs ({len(cfg.seeds)} seeds) in {root}")
    execute(specs, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
    res = analyse(load_predictions(specs, cfg.level), cfg.level, cfg.annotated_vendors)
    for name in ("aucs", "tests", "summary", "ensemble_aucs", "ensemble_tests"):
        res[name].to_csv(root / f"{name}.csv", index=False)
    (root / "claims.json").write_text(json.dumps(res["claims"], indent=2))
    (root / "experiment.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    recipe = specs[0].cfg
    (root / "report.html").write_text(table1_html(cfg, recipe, res))
    return res


def register(app: typer.Typer) -> None:
    @app.command(RUN_TAG)
    def dbt_selectivekd(
        config: Path | None = typer.Option(None, "--config", "-c", help="experiment YAML (fields: see --help text)"),
        set_: list[str] = typer.Option([], "--set", "-s", help="override key=value, e.g. seeds=[0] or jobs=2"),
    ) -> None:
        """Table 1 of SelectiveKD: Baseline, KD, KD*, SelectiveKD, SelectiveKD* per seed; AUC + DeLong per vendor.

        Fields: out_dir, recipe (a train config), set (overrides for every run), seeds, settings, level,
        annotated_vendors, synth {n, seed}, jobs, threads, devices. Finished runs are reused.
        """
        from ..config import load_config

        cfg = load_config(DBTSelectiveKDConfig, config, set_)
        res = run_experiment(cfg)
        for c in res["claims"]:
            mark = {True: "holds", False: "does not hold", None: "n/a"}[c["holds"]]
            typer.echo(f"  {c['claim']}: {mark} ({c['figures']})")
        typer.echo(f"report: {Path(cfg.out_dir) / 'report.html'}")
