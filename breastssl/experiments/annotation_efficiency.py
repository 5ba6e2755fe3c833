"""`breastssl experiment annotation-efficiency`: AUC vs the fraction of annotated exams (SelectiveKD paper Fig. 2).

For each budget (10%…100%) a derived manifest keeps the slice annotations of a nested, stratified sample of
the annotated training exams (cancer / benign / normal in their proportions; the 20% set contains the 10%
set); the other annotated exams keep only their breast labels (``annotation: weak``). On each budget the
Baseline is trained and becomes the teacher of SelectiveKD and SelectiveKD*, exactly as in Table 1. The
report plots AUC with CIs against the budget and gives the budget at which each setting reaches the
Baseline trained on all annotations.
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
from ._dbt_tables import STRATEGY
from .dbt_selectivekd import SynthSpec, ensure_data, load_predictions

TAG = "annotation-efficiency"


class AnnotationEfficiencyConfig(Section):
    """Settings of the annotation-efficiency experiment; training details come from ``recipe`` (+ ``set``)."""

    out_dir: str = "runs/annotation_efficiency"
    recipe: str = "configs/dbt_selectivekd_demo.yaml"
    set: list[str] = []
    budgets: list[float] = Field([0.1, 0.25, 0.5, 1.0], description="fractions of annotated exams (paper: 0.1…1.0)")
    budget_seed: int = Field(0, description="seed of the nested stratified sampling (the same for every run)")
    seeds: list[int] = [0]
    settings: list[str] = ["baseline", "selective_kd", "selective_kd_weak"]
    level: str = Field("breast", pattern="^(stack|breast|exam)$")
    group: str = Field("overall", description="the curve's test group: overall or a vendor")
    reuse_from: str | None = Field(None, description="a dbt-selectivekd out_dir whose runs equal the 100% budget")
    synth: SynthSpec | None = Field(default_factory=SynthSpec)
    jobs: int = Field(1, ge=1)
    threads: int = Field(1, ge=1)
    devices: list[str] = []
    choice: dict[str, dict[str, str | float]] | str | None = Field(
        None,
        description="the students' validated composition / student_init / T per setting, or a YAML file with a "
        "`choice:` key (e.g. configs/dbt_selectivekd_validated.yaml, chosen on the val split)",
    )
    n_boot: int = Field(1000, ge=100, description="bootstrap replicates (seeds × test cases) of every CI")
    students_at_full: bool = Field(
        True,
        description="train the students at 100% too (false: only the Baseline, the curve's target, e.g. when "
        "a Table-1 experiment with the same data, recipe, choice and seeds already holds the 100% students)",
    )


def _stratum(labels: pd.Series) -> str:
    values = set(labels.astype(str))
    return "cancer" if "cancer" in values else "benign" if "benign" in values else "normal"


def budget_manifest(manifest: pd.DataFrame, root: Path, fraction: float, seed: int) -> tuple[pd.DataFrame, dict]:
    """The manifest of one budget (paths made absolute) and its counts per stratum."""
    from ._dbt_tables import stratified_budget

    man = manifest.copy()
    train = man[(man["split"].astype(str) == "train") & (man["annotation"].astype(str) == "full")]
    exams = train.groupby("exam_id")["breast_label"].apply(_stratum).rename("stratum").reset_index()
    if exams.empty:
        raise UserError("the manifest has no fully annotated training exams to subsample")
    keep = stratified_budget(exams, fraction, seed)
    dropped = train.index[~train["exam_id"].astype(str).isin(keep)]
    man.loc[dropped, "annotation"] = "weak"
    man["path"] = [str((root / p).resolve()) if not Path(p).is_absolute() else p for p in man["path"].astype(str)]
    kept = exams[exams["exam_id"].astype(str).isin(keep)]
    counts: dict[str, Any] = {"budget": fraction}
    counts.update({f"{s} exams": int((kept["stratum"] == s).sum()) for s in ("cancer", "benign", "normal")})
    counts["annotated exams"] = len(kept)
    counts["of"] = len(exams)
    return man, counts


def _absolute_lesions(lesions_path: Path, root: Path, out: Path) -> Path:
    from ..data.schema import read_table

    les = read_table(lesions_path)
    if "mask_path" in les.columns:
        les["mask_path"] = [p if not isinstance(p, str) or Path(p).is_absolute() else str((root / p).resolve())
                            for p in les["mask_path"]]  # fmt: skip
    les.to_csv(out, index=False)
    return out


def _same_run(a: Any, b_dir: Path) -> bool:
    """True when the run at ``b_dir`` was trained with ``a``'s config (up to its folder and progress bar)."""
    from ..config import load_config
    from ..run.recipes.dbt import RunConfig

    if not (b_dir / "metrics.json").is_file() or not (b_dir / "config.yaml").is_file():
        return False
    b = load_config(RunConfig, b_dir / "config.yaml")
    strip = {"train": {"out_dir", "progress"}, "strategy": {"teacher_checkpoint"}}
    return a.model_dump(exclude=strip) == b.model_dump(exclude=strip)


def _budget_specs(
    cfg: AnnotationEfficiencyConfig, bdir: Path, fraction: float, seed: int, data_sets: list[str], choice: dict | None
):
    """The runs of one budget and seed: the baseline, then the students it teaches (with the validated choice)."""
    from ._dbt_tune import choice_overrides
    from ._runs import RunSpec, build_run_config

    specs = []
    teacher = bdir / f"seed{seed}" / "baseline"
    students = [s for s in cfg.settings if s != "baseline"] if fraction < 1.0 or cfg.students_at_full else []
    for setting in ["baseline", *students]:
        run_dir = bdir / f"seed{seed}" / setting
        sets = [*cfg.set, *data_sets, f"train.seed={seed}", "train.progress=false", *choice_overrides(choice, setting)]
        sets += [f"strategy.name={STRATEGY[setting]}", f"train.out_dir={run_dir}"]
        if setting != "baseline":
            sets.append(f"strategy.teacher_checkpoint={teacher}")
        run_cfg = build_run_config(cfg.recipe, sets)
        other = Path(cfg.reuse_from or "") / f"seed{seed}" / setting
        if fraction == 1.0 and cfg.reuse_from and _same_run(run_cfg, other):
            # identical data and recipe: Table 1's run of this seed is this point of the curve
            run_cfg = run_cfg.model_copy(update={"train": run_cfg.train.model_copy(update={"out_dir": str(other)})})
        needs = [] if setting == "baseline" else [f"{bdir.name}/seed{seed}/baseline"]
        specs.append(RunSpec(f"{bdir.name}/seed{seed}/{setting}", run_cfg, needs))
    return specs


def curve_specs(cfg: AnnotationEfficiencyConfig, root: Path) -> tuple[list[Any], pd.DataFrame]:
    """RunSpecs per (budget, seed, setting) and the budget table."""
    from ..data.schema import read_table
    from ._runs import build_run_config

    base = build_run_config(cfg.recipe, cfg.set)
    manifest_path = Path(base.data.manifest)
    data_root = manifest_path.parent
    manifest = read_table(manifest_path)
    lesions_src = Path(base.data.lesions) if base.data.lesions else data_root / "lesions.csv"
    from ._dbt_tune import resolve_choice

    choice = resolve_choice(cfg.choice)
    budgets, data_of = [], {}
    for fraction in sorted(set(cfg.budgets)):
        bdir = root / f"budget{round(100 * fraction):03d}"
        man, counts = budget_manifest(manifest, data_root, fraction, cfg.budget_seed)
        budgets.append(counts)
        bdir.mkdir(parents=True, exist_ok=True)
        data_sets: list[str] = []  # 100%: the recipe's own manifest, unchanged
        if fraction < 1.0:
            man.to_csv(bdir / "manifest.csv", index=False)
            data_sets.append(f"data.manifest={bdir / 'manifest.csv'}")
        if fraction < 1.0 and lesions_src.is_file():
            data_sets.append(f"data.lesions={_absolute_lesions(lesions_src, data_root, bdir / 'lesions.csv')}")
        data_of[fraction] = (bdir, data_sets)
    # seed-major: an interrupted experiment has whole curves for its first seeds, not every seed of a few budgets
    specs = [spec for seed in cfg.seeds for fraction, (bdir, sets) in data_of.items()
             for spec in _budget_specs(cfg, bdir, fraction, seed, sets, choice)]  # fmt: skip
    return specs, pd.DataFrame(budgets)


def curve_predictions(specs: list[Any], level: str) -> dict[tuple[int, str], pd.DataFrame]:
    """Every finished run's level predictions keyed (seed, 'setting@budget'), budgets in percent."""
    from ._dbt_curve import point

    out = {}
    for spec in specs:
        budget = int(spec.name.split("/")[0].removeprefix("budget"))
        for (seed, setting), df in load_predictions([spec], level).items():
            out[(seed, point(setting, budget))] = df
    return out


def run_experiment(cfg: AnnotationEfficiencyConfig, echo: Any = typer.echo) -> dict[str, Any]:
    from ._dbt_curve import analyse_curve, ci_matching
    from ._dbt_report import curve_html
    from ._dbt_tables import matching_budget
    from ._runs import execute

    if not cfg.budgets or any(not 0 < b <= 1 for b in cfg.budgets):
        raise UserError(f"budgets must be fractions in (0, 1], got {cfg.budgets}")
    if 1.0 not in cfg.budgets:
        raise UserError("budgets must include 1.0: the target is the Baseline trained on all annotations")
    root = Path(cfg.out_dir)
    ensure_data(cfg.recipe, cfg.set, cfg.synth)
    specs, budgets = curve_specs(cfg, root)
    echo(f"{TAG}: {len(specs)} runs in {root}")
    execute(specs, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
    res = analyse_curve(curve_predictions(specs, cfg.level), cfg.level, cfg.group, cfg.n_boot)
    curve, effects = res["curve"], res["effects"]
    target = float(curve[(curve["setting"] == "baseline") & (curve["budget"] == 1.0)]["auc_mean"].iloc[0])
    match = {"target": target, "budget": {s: matching_budget(curve, s, target) for s in cfg.settings},
             "ci": {s: ci_matching(effects, s) for s in cfg.settings}}  # fmt: skip
    curve.to_csv(root / "curve.csv", index=False)
    effects.to_csv(root / "curve_effects.csv", index=False)
    budgets.to_csv(root / "budgets.csv", index=False)
    (root / "matching_budget.json").write_text(json.dumps(match, indent=2))
    (root / "report.html").write_text(curve_html(cfg, specs[0].cfg, curve, match, budgets, effects))
    return {"curve": curve, "effects": effects, "match": match, "budgets": budgets}


def register(app: typer.Typer) -> None:
    @app.command(TAG)
    def annotation_efficiency(
        config: Path | None = typer.Option(None, "--config", "-c", help="experiment YAML"),
        set_: list[str] = typer.Option([], "--set", "-s", help="override key=value, e.g. budgets=[0.1,0.5,1.0]"),
    ) -> None:
        """AUC vs annotated fraction for Baseline, SelectiveKD, SelectiveKD* (nested, stratified budgets).

        Fields: out_dir, recipe, set, budgets, budget_seed, seeds, settings, level, group, reuse_from,
        synth {n, seed, val_exams, test_exams, ...}, jobs, threads, devices, choice (inline or a YAML file with
        a `choice:` key, made on val), n_boot. Finished runs are reused.
        """
        from ..config import load_config

        cfg = load_config(AnnotationEfficiencyConfig, config, set_)
        res = run_experiment(cfg)
        for s, b in res["match"]["budget"].items():
            where = "no budget" if b is None else f"{100 * b:.0f}% annotated"
            nb = res["match"]["ci"][s]["not_below_full"]
            ci_where = "at no budget" if nb is None else f"from {100 * nb:.0f}%"
            typer.echo(
                f"  {s}: reaches the full-annotation Baseline (AUC {res['match']['target']:.3f}) at {where}"
                f" (mean curve); not significantly below it {ci_where}"
            )
        typer.echo(f"report: {Path(cfg.out_dir) / 'report.html'}")
