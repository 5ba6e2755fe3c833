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
from ._dbt_data import SynthSpec, ensure_dbt_data
from ._dbt_tables import LABELS, STRATEGY
from ._dbt_tune import Ablation, TuneSpec, choice_overrides, resolve_choice

__all__ = ["DBTSelectiveKDConfig", "SynthSpec", "ensure_data", "run_experiment"]

RUN_TAG = "dbt-selectivekd"


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
    tune: TuneSpec | None = Field(None, description="choose composition and student_init on the val split first")
    choice: dict[str, dict[str, str | float]] | str | None = Field(
        None,
        description="without tune: a choice made earlier on val, per student setting {composition, student_init, "
        "threshold}, or a YAML file with a `choice:` key (e.g. configs/dbt_selectivekd_validated.yaml)",
    )
    ablations: list[Ablation] = Field([], description="one-change experiments on the test split, every seed")
    n_boot: int = Field(1000, ge=100, description="bootstrap replicates (seeds × test cases) of every CI")


def ensure_data(recipe: str, overrides: list[str], synth: SynthSpec | None) -> None:
    """Generate synthetic DBT data where the recipe expects a manifest, if allowed and missing."""
    from ._runs import build_run_config

    ensure_dbt_data(Path(build_run_config(recipe, overrides).data.manifest), synth, typer.echo)


def _setting_sets(cfg: DBTSelectiveKDConfig, root: Path, seed: int, setting: str, choice: dict | None) -> list[str]:
    """The overrides of one main run (seed, setting) on top of the recipe, without its out_dir."""
    sets = [*cfg.set, f"train.seed={seed}", "train.progress=false", *choice_overrides(choice, setting),
            f"strategy.name={STRATEGY[setting]}"]  # fmt: skip
    if setting != "baseline":
        sets.append(f"strategy.teacher_checkpoint={root / f'seed{seed}' / 'baseline'}")
    return sets


def table1_specs(
    cfg: DBTSelectiveKDConfig, root: Path, extra: list[str] | None = None, choice: dict | None = None
) -> list[Any]:
    """RunSpecs of every (seed, setting): the baseline of a seed is the teacher of its students.

    choice: the validated composition / student_init per setting (``_dbt_tune``), applied to the students.
    """
    from ._runs import RunSpec, build_run_config

    unknown = sorted(set(cfg.settings) - set(LABELS))
    if unknown:
        raise UserError(f"unknown settings {unknown}; choose from {list(LABELS)}")
    specs = []
    for seed in cfg.seeds:
        for setting in ["baseline", *[s for s in cfg.settings if s != "baseline"]]:
            run_dir = root / f"seed{seed}" / setting
            sets = [*_setting_sets(cfg, root, seed, setting, choice), *(extra or []), f"train.out_dir={run_dir}"]
            needs = [] if setting == "baseline" else [f"seed{seed}/baseline"]
            specs.append(RunSpec(f"seed{seed}/{setting}", build_run_config(cfg.recipe, sets), needs))
    return specs


def ablation_specs(cfg: DBTSelectiveKDConfig, root: Path, choice: dict | None) -> list[Any]:
    """RunSpecs of every ablation × seed × setting (``ablation/<name>/seed<s>/<setting>``), teachers included."""
    from ._runs import RunSpec, build_run_config

    base = {s.name: s for s in table1_specs(cfg, root, choice=choice)}
    specs = [base[f"seed{seed}/baseline"] for seed in cfg.seeds] if cfg.ablations else []
    for ab in cfg.ablations:
        unknown = sorted(set(ab.settings) - set(LABELS) | ({"baseline"} & set(ab.settings)))
        if unknown:
            raise UserError(
                f"ablation {ab.name}: settings {unknown} cannot be ablated; choose students of {list(LABELS)}"
            )
        for seed in ab.seeds if ab.seeds is not None else cfg.seeds:
            if seed not in cfg.seeds:
                raise UserError(f"ablation {ab.name}: seed {seed} is not one of the experiment's seeds {cfg.seeds}")
            for setting in ab.settings:
                name = f"ablation/{ab.name}/seed{seed}/{setting}"
                sets = [*_setting_sets(cfg, root, seed, setting, choice), *ab.set, f"train.out_dir={root / name}"]
                specs.append(RunSpec(name, build_run_config(cfg.recipe, sets), [f"seed{seed}/baseline"]))
    return specs


def load_predictions(specs: list[Any], level: str) -> dict[tuple[int, str], pd.DataFrame]:
    """``predictions_<level>.csv`` of every finished run, keyed (seed, setting); ablation runs as 'setting@name'."""
    out = {}
    for spec in specs:
        parts = spec.name.split("/")
        seed, setting = parts[-2:]
        if parts[0] == "ablation":
            setting = f"{setting}@{parts[1]}"
        path = spec.out_dir / f"predictions_{level}.csv"
        if not path.is_file():
            raise UserError(f"run {spec.name} finished without {path}")
        out[(int(seed.removeprefix("seed")), setting)] = pd.read_csv(path, dtype={"exam_id": str, "image_id": str})
    return out


def analyse(
    preds: dict[tuple[int, str], pd.DataFrame],
    level: str,
    annotated: list[str],
    n_boot: int = 1000,
    controls: list[str] | None = None,
) -> dict[str, Any]:
    """Every table of the report from the prediction tables (``_dbt_tables``, ``_dbt_effects``).

    preds: main runs keyed (seed, setting) and ablation runs keyed (seed, 'setting@ablation'); the per-seed
    and ensemble DeLong tables cover the main runs, the bootstrap effects both (an ablation is compared
    with its main setting and the Baseline; every student is compared with a ``controls`` ablation).
    """
    from . import _dbt_effects as e
    from . import _dbt_tables as t

    main = {k: v for k, v in preds.items() if "@" not in k[1]}
    aucs = t.auc_rows(main)
    tests = t.pair_tests(main, level)
    summ = t.summary(aucs, tests)
    ens = t.ensemble(main, level) if len({s for s, _ in main}) > 1 else {}
    ablated = sorted({st for _, st in preds if "@" in st})
    pairs = [*t.PAIRS, ("selective_kd_weak", "kd"), *((st, st.split("@")[0]) for st in ablated)]
    pairs += [(st, "baseline") for st in ablated]  # e.g. the 'continued' control against the teacher itself
    students = [k for k in LABELS if k != "baseline"]
    pairs += [(x, st) for st in ablated if st.split("@")[1] in (controls or []) for x in students]
    effects = e.paired_effects(preds, level, pairs, n_boot)
    return {
        "aucs": aucs,
        "tests": tests,
        "summary": summ,
        "ensemble_aucs": t.auc_rows(ens) if ens else pd.DataFrame(),
        "ensemble_tests": t.pair_tests(ens, level) if ens else pd.DataFrame(),
        "effects": effects,
        "setting_cis": e.setting_cis(preds, level, n_boot),
        "score_means": e.negative_means(preds),
        "claims": e.claims_with_ci(effects, LABELS, annotated),
    }


def _run_tables(root: Path, specs: list[Any]) -> dict[str, pd.DataFrame]:
    """Per-run side tables: the prior correction of every run and the T sweep of the selective ones."""
    calib, sweeps = [], []
    for spec in specs:
        path = spec.out_dir / "metrics.json"
        m = json.loads(path.read_text()) if path.is_file() else {}
        if "calibration" in m:
            calib.append({"run": spec.name, **m["calibration"], "composition": json.dumps(m.get("composition")),
                          "selected_pool": m.get("selected_pool")})  # fmt: skip
        sweep = spec.out_dir / "selection_sweep.csv"
        if sweep.is_file():
            sweeps.append(pd.read_csv(sweep).assign(run=spec.name))
    return {"calibration": pd.DataFrame(calib), "sweeps": pd.concat(sweeps) if sweeps else pd.DataFrame()}


def run_experiment(cfg: DBTSelectiveKDConfig, echo: Any = typer.echo) -> dict[str, Any]:
    """(Tune on val,) train what is missing, then write results (CSV/JSON) and report.html into ``out_dir``."""
    from ._dbt_report import table1_html
    from ._dbt_tune import run_tune
    from ._runs import execute

    root = Path(cfg.out_dir)
    ensure_data(cfg.recipe, cfg.set, cfg.synth)
    choice, tune_table = resolve_choice(cfg.choice), pd.DataFrame()
    bad = sorted(set(choice or {}) - (set(LABELS) - {"baseline"}))
    if bad:
        raise UserError(f"choice: {bad} are not student settings; choose from {sorted(set(LABELS) - {'baseline'})}")
    if cfg.tune is not None:
        bases = {s.name: s for s in table1_specs(cfg, root) if s.name.endswith("/baseline")}
        echo(f"{RUN_TAG}: choosing composition and student_init on the {cfg.tune.split!r} split")
        choice, tune_table = run_tune(cfg, root, bases, echo)
        echo(f"  chosen: {json.dumps(choice)}")
    specs = table1_specs(cfg, root, choice=choice)
    echo(f"{RUN_TAG}: {len(specs)} runs ({len(cfg.seeds)} seeds) in {root}")
    execute(specs, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
    ab_specs = ablation_specs(cfg, root, choice)
    if ab_specs:
        execute(ab_specs, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
    ab_only = [s for s in ab_specs if s.name.startswith("ablation/")]
    controls = [a.name for a in cfg.ablations if a.control]
    preds = load_predictions([*specs, *ab_only], cfg.level)
    res = analyse(preds, cfg.level, cfg.annotated_vendors, cfg.n_boot, controls)
    res.update(_run_tables(root, [*specs, *ab_only]), tune=tune_table, choice=choice)
    for name in ("aucs", "tests", "summary", "ensemble_aucs", "ensemble_tests", "effects", "setting_cis",
                 "score_means", "calibration", "sweeps"):  # fmt: skip
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
        annotated_vendors, synth {n, seed, val_exams, test_exams, ...}, jobs, threads, devices,
        tune {seeds, split, composition, student_init} (choices made on val), ablations [{name, settings,
        set}], n_boot. Finished runs are reused.
        """
        from ..config import load_config

        cfg = load_config(DBTSelectiveKDConfig, config, set_)
        res = run_experiment(cfg)
        for c in res["claims"]:
            mark = {True: "holds", False: "does not hold", None: "n/a"}[c["holds"]]
            typer.echo(f"  {c['claim']}: {mark} ({c['figures']})")
        typer.echo(f"report: {Path(cfg.out_dir) / 'report.html'}")
