"""Choices made on the validation split, and one-change ablations, for the SelectiveKD Table-1 experiment.

DESIGN §5.1 leaves two settings open that decide the outcome at small scale: how a student's batch is
shared between annotated, selected and KD-only slices (``strategy.composition.mode``) and how it is
initialised (``strategy.student_init``). DESIGN §11: they are chosen on the validation split, never on the
test split. The ``tune`` stage trains each student setting once per tune seed with each composition mode
(initialised as ``model``), keeps the mode with the best mean validation AUC, then tries the other
initialisations with that mode, and keeps the best (ties go to the earlier candidate: the paper's plain
choice comes first). The students share the main runs' teachers (``seed{s}/baseline``).

An ablation re-trains some settings of every seed with a few overrides on top of the chosen ones (e.g.
``strategy.calibrate=false``) and writes next to the main runs, so its effect is a paired comparison on
the same test cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from ..config import Section
from ..errors import UserError

TUNE_DIR = "tune"


class TuneSpec(Section):
    """The validation-split search over batch composition and student initialisation."""

    seeds: list[int] = Field([0], description="seeds of the tune runs (their teachers are the main baselines)")
    split: str = Field("val", description="the split the candidates are scored on")
    composition: list[str] = Field(["fixed", "capped"], description="strategy.composition.mode candidates")
    student_init: list[str] = Field(["model", "teacher"], description="strategy.student_init candidates")
    thresholds: dict[str, list[float]] = Field(
        {"selective_kd": [0.7, 0.3, 0.1], "selective_kd_weak": [0.1, 0.05, 0.3]},
        description="T candidates of the selective settings (the paper's value first), tried last",
    )


class Ablation(Section):
    """One-change experiment: ``settings`` re-trained for every seed with ``set`` applied on top."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_\-]+$")
    settings: list[str]
    set: list[str] = []
    seeds: list[int] | None = Field(None, description="seeds to re-train (None = every seed of the experiment)")
    control: bool = Field(False, description="compare every student with this run (e.g. the Baseline trained on)")
    description: str = ""


def _candidate(mode: str, init: str) -> str:
    return f"{mode}-{init}"


def _val_auc(spec: Any) -> float:
    return float(json.loads((spec.out_dir / "metrics.json").read_text())["auc"] or float("nan"))


def tune_specs(
    cfg: Any, root: Path, base_specs: dict[str, Any], stage: str, chosen_mode: dict[str, str] | None = None
) -> list[Any]:
    """RunSpecs of one tune stage: ``modes`` (every composition, first init) or ``inits`` (the rest, chosen mode).

    base_specs: the main baseline RunSpecs by name (``seed{s}/baseline``), included so the scheduler trains them.
    """
    from ._dbt_tables import STRATEGY
    from ._runs import RunSpec, build_run_config

    t = cfg.tune
    specs = [base_specs[f"seed{s}/baseline"] for s in t.seeds]
    for seed in t.seeds:
        for setting in [s for s in cfg.settings if s != "baseline"]:
            thr: list[float | None] = [None]
            if stage == "modes":
                cands = [(m, t.student_init[0]) for m in t.composition]
            elif stage == "inits":
                cands = [(chosen_mode[setting]["composition"], i) for i in t.student_init[1:]]
            else:  # thresholds, with the chosen composition and init; the first (paper's) T ran already
                cands = [(chosen_mode[setting]["composition"], chosen_mode[setting]["student_init"])]
                thr = list(t.thresholds.get(setting, [])[1:])
            for (mode, init), th in ((c, x) for c in cands for x in thr):
                name = f"{TUNE_DIR}/seed{seed}/{setting}/{_candidate(mode, init)}" + (
                    f"-T{th:g}" if th is not None else ""
                )
                sets = [*cfg.set, f"train.seed={seed}", "train.progress=false", f"data.test_split={t.split}",
                        f"strategy.name={STRATEGY[setting]}", f"strategy.teacher_checkpoint={root}/seed{seed}/baseline",
                        f"strategy.composition.mode={mode}", f"strategy.student_init={init}",
                        f"train.out_dir={root / name}"]  # fmt: skip
                if th is not None:
                    sets.append(f"strategy.threshold={th}")
                specs.append(RunSpec(name, build_run_config(cfg.recipe, sets), [f"seed{seed}/baseline"]))
    return specs


def tune_table(specs: list[Any]) -> pd.DataFrame:
    """Validation AUC of every finished tune candidate: setting, composition, student_init, seed, val_auc."""
    rows = []
    for spec in specs:
        parts = spec.name.split("/")
        if parts[0] != TUNE_DIR:
            continue
        mode, init, *rest = parts[3].split("-")
        m = json.loads((spec.out_dir / "metrics.json").read_text())
        rows.append({"setting": parts[2], "composition": mode, "student_init": init, "threshold": m.get("threshold"),
                     "seed": int(parts[1].removeprefix("seed")), "val_auc": _val_auc(spec),
                     "selected_pool": m.get("selected_pool")})  # fmt: skip
    return pd.DataFrame(rows)


def best(table: pd.DataFrame, setting: str, column: str, order: list[str]) -> str:
    """The candidate of ``column`` with the best mean validation AUC for ``setting`` (ties: earlier in order)."""
    means = table[table["setting"] == setting].groupby(column)["val_auc"].mean()
    ranked = sorted((c for c in order if c in means.index), key=lambda c: (-means[c], order.index(c)))
    return ranked[0]


def choose(cfg: Any, modes: pd.DataFrame, inits: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per student setting: the chosen composition mode and student initialisation."""
    out = {}
    for setting in sorted(set(modes["setting"])):
        mode = best(modes, setting, "composition", cfg.tune.composition)
        pool = pd.concat([modes[(modes["composition"] == mode)], inits], ignore_index=True)
        out[setting] = {"composition": mode, "student_init": best(pool, setting, "student_init", cfg.tune.student_init)}
    return out


def choose_threshold(cfg: Any, table: pd.DataFrame, choice: dict[str, dict[str, Any]]) -> None:
    """Add the best T (mean val AUC; ties: the paper's, listed first) of each selective setting to ``choice``."""
    for setting, cands in cfg.tune.thresholds.items():
        if setting not in choice or not cands:
            continue
        c = choice[setting]
        rows = table[(table["setting"] == setting) & (table["composition"] == c["composition"])
                     & (table["student_init"] == c["student_init"])]  # fmt: skip
        rows = rows.assign(threshold=rows["threshold"].astype(float).round(6))
        means = rows.groupby("threshold")["val_auc"].mean()
        order = [round(float(x), 6) for x in cands]
        ranked = sorted((x for x in order if x in means.index), key=lambda x: (-means[x], order.index(x)))
        if ranked:
            c["threshold"] = ranked[0]


def resolve_choice(choice: dict | str | None) -> dict | None:
    """The validated choice per student setting: given inline, or read from a YAML file's ``choice:`` key."""
    if choice is None or isinstance(choice, dict):
        return choice
    import yaml

    path = Path(choice)
    if not path.is_file():
        raise UserError(f"choice: {path} is not a file")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict) or not isinstance(doc.get("choice"), dict):
        raise UserError(f"choice: {path} has no `choice:` mapping of student settings")
    return doc["choice"]


def choice_overrides(choice: dict[str, dict[str, str]] | None, setting: str) -> list[str]:
    """The --set lines of a setting's validated choice (none for the baseline or without a tune stage)."""
    if not choice or setting not in choice:
        return []
    c = choice[setting]
    sets = [f"strategy.composition.mode={c['composition']}", f"strategy.student_init={c['student_init']}"]
    return sets + ([f"strategy.threshold={c['threshold']}"] if c.get("threshold") is not None else [])


def baseline_val_auc(spec: Any, split: str, out: Path) -> float:
    """The teacher's own AUC on the tune split (the reference of the candidates), scored once into ``out``."""
    if out.is_file():
        return float(json.loads(out.read_text())["auc"])
    from ..data.dbt_slices import StackStore, score_slices
    from ..run.recipes.dbt import evaluate_split, load_teacher, read_data

    run_cfg = spec.cfg
    manifest, lesions, root = read_data(run_cfg)
    rows = manifest[manifest["split"].astype(str) == split]
    store = StackStore(manifest, root, tuple(run_cfg.data.image_size), lesions, run_cfg.data.pos_halfwidth,
                       run_cfg.data.cache_mb)  # fmt: skip
    scores = score_slices(load_teacher(spec.out_dir), store, rows["image_id"].astype(str).tolist(),
                          run_cfg.strategy.score_batch_size)  # fmt: skip
    _, metrics = evaluate_split(scores, rows, run_cfg)
    auc = metrics[run_cfg.eval.level]["overall"]["auc"]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": split, "auc": auc, "levels": metrics}, indent=2))
    return float(auc if auc is not None else float("nan"))


def run_tune(cfg: Any, root: Path, base_specs: dict[str, Any], echo: Any) -> tuple[dict, pd.DataFrame]:
    """Both tune stages; returns the choice per setting and every candidate's validation AUC."""
    from ._runs import execute

    stage1 = tune_specs(cfg, root, base_specs, "modes")
    execute(stage1, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
    modes = tune_table(stage1)
    chosen_mode = {
        s: {"composition": best(modes, s, "composition", cfg.tune.composition)} for s in set(modes["setting"])
    }
    inits = pd.DataFrame(columns=modes.columns)
    if len(cfg.tune.student_init) > 1:
        stage2 = tune_specs(cfg, root, base_specs, "inits", chosen_mode)
        execute(stage2, root / "configs", cfg.jobs, cfg.threads, cfg.devices, echo)
        inits = tune_table(stage2)
    choice = choose(cfg, modes, inits)
    stage3 = [s for s in tune_specs(cfg, root, base_specs, "thresholds", choice) if s.name.startswith(TUNE_DIR)]
    if stage3:
        execute([*(base_specs[f"seed{x}/baseline"] for x in cfg.tune.seeds), *stage3], root / "configs", cfg.jobs,
                cfg.threads, cfg.devices, echo)  # fmt: skip
        inits = pd.concat([inits, tune_table(stage3)], ignore_index=True)
    choose_threshold(cfg, pd.concat([modes, inits], ignore_index=True), choice)
    refs = [{"setting": "baseline", "composition": "–", "student_init": "–", "seed": seed,
             "val_auc": baseline_val_auc(base_specs[f"seed{seed}/baseline"], cfg.tune.split,
                                         root / TUNE_DIR / f"seed{seed}" / "baseline_val.json")}
            for seed in cfg.tune.seeds]  # fmt: skip
    table = pd.concat([pd.DataFrame(refs), modes, inits], ignore_index=True)
    table.to_csv(root / "tune.csv", index=False)
    (root / "tune_choice.json").write_text(json.dumps(choice, indent=2))
    return choice, table
