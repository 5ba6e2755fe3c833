"""`breastssl experiment comoto`: the CoMoTo table (seed 003) — DBT-only, pretraining, image-level KD, LsKD,
LsKD + ImPA — on the full and a low-data (10%) DBT training set, several seeds, one HTML report.

Per seed: two mammography teachers (RetinaNet-C5, with and without ImPA), then per DBT training fraction five
students on the same paired batches (DBT slices + an unpaired mammogram each). Every cell is one ``breastssl train``
run of the ``comoto`` recipe (its folder, config.yaml, checkpoints, predictions), listed by :mod:`._comoto_runs` and
trained by the one scheduler (``_runs.execute``: ``jobs`` runs at a time, ``gpus`` handed out, finished runs
reused). ``dbt_dir`` / ``mammo_dir`` may be the user's own data: a ``manifest.csv`` and ``lesions.csv`` with
``train`` / ``test`` splits in each (nothing is synthesised where a manifest exists).
Every student is run over every slice of the test volumes, per-slice boxes are merged across slices
(``inference.dbt_merge``) and scored with the BCS-DBT FROC (``metrics.froc_dbt``): mean sensitivity at 1–4
FP/volume over positive volumes. The synthetic images are ~80 px high, where the challenge's 100-px floor on the
hit distance accepts any box in the right slices, so the primary reading is the same rule with coordinates
scaled to BCS-DBT pixels (2457 px high; a hit must lie within half a GT diagonal of the lesion, ``scaled_*``);
the rule on the raw coordinates (``raw_*``: finding the lesion's slices and side) is the secondary reading.
Every LsKD run also records the mean over its logged steps of ``loss_lskd`` and of the teacher's 9-point entropy
(``lskd_teacher_entropy``; log 9 when the 9 points are indistinguishable).

The effects (``_comoto_effects``): every row's mean over seeds and the paired effects behind the paper's claims,
each with a 95% CI from a bootstrap over seeds × test exams, the claims decided on those CIs (``rows_ci.csv``,
``effects.csv``, ``claims.csv``). ``dbt_synth`` generates a powered test split apart from the training data
(``_comoto_data``; ``configs/comoto_powered.yaml``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import typer
from pydantic import Field

from ..config import Section
from ..models.comoto import comoto_detector
from ._comoto_effects import comoto_effects, effect_sections, write_effects
from ._comoto_runs import ROWS
from ._dbt_data import SynthSpec

MODEL_KEYS = ("size", "backbone", "width", "stages", "fpn", "dilate_c5", "anchor_sizes")  # one detector per out_dir
ENTROPY_COLS = ["train_mean_lskd_teacher_entropy", "train_mean_loss_lskd"]  # LsKD rows only (NaN elsewhere)


class ComotoExperimentConfig(Section):
    """Settings of the CoMoTo experiment (see configs/comoto_demo.yaml, configs/comoto_paper.yaml)."""

    out_dir: str = "runs/comoto"
    dbt_dir: str = "data/comoto/dbt"
    mammo_dir: str = "data/comoto/mammo"
    synth_n: tuple[int, int] = Field((120, 200), description="exams to synthesise (DBT, mammo) if a dir is empty")
    dbt_synth: SynthSpec | None = Field(
        None,
        description="DBT data with a separately generated, enriched test split (replaces synth_n[0]); see _comoto_data",
    )
    min_test_lesion_volumes: int = Field(0, ge=0, description="refuse a DBT test split with fewer lesion volumes")
    n_boot: int = Field(1000, ge=10, description="replicates of the seeds × test exams bootstrap of the effects")
    size: tuple[int, int] = Field((128, 96), description="(H, W) every DBT slice and mammogram is resized to")
    backbone: str = "tiny"
    width: int = 8
    stages: int = 3
    pretrained: bool = False
    fpn: bool = False
    dilate_c5: bool = Field(False, description="dilate the backbone's last stage: C5 at half the stride (see README)")
    anchor_sizes: tuple[float, float, float] | None = (10.0, 14.0, 20.0)
    fractions: list[float] = Field([1.0, 0.1], description="fractions of DBT training patients (nested per seed)")
    seeds: list[int] = [0]
    rows: list[str] = list(ROWS)
    teacher_steps: int = 300
    student_steps: int = 200
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"
    temperature: float = 4.0
    alpha: float = 2.0
    impa_beta: float = 2.0
    neg_stride: int = 4
    balance: bool = Field(True, description="repeat positive DBT slices so that about half of the slices hold boxes")
    iou_merge: float = 0.3
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where runs train: auto = CUDA if available")
    jobs: int = Field(1, ge=1, description="runs trained at once, each a `breastssl train` process")
    threads: int = Field(1, ge=1, description="torch threads of each run's process")
    gpus: list[str] = Field([], description="GPU ids handed to concurrent runs (one each), e.g. ['0', '1']")


def _synth(kind: str, out: Path, n: int) -> None:
    if not (out / "manifest.csv").is_file():
        from ..data.synth.run import run_synth

        run_synth(kind, out, n=n, seed=0, fmt="npy", quiet=True)


_model = comoto_detector  # the detector of a config (models.comoto); kept under its old name for callers


def dbt_test_truth(cfg: ComotoExperimentConfig) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(volumes, lesions, ...) of the DBT test split, as the runs score it (``data.comoto.volume_truth``)."""
    from ..data.comoto import volume_truth
    from ..data.schema import read_table

    root = Path(cfg.dbt_dir)
    man = read_table(root / "manifest.csv").astype({"image_id": str})
    return volume_truth(man, read_table(root / "lesions.csv").astype({"image_id": str}))


def run_comoto(cfg: ComotoExperimentConfig) -> pd.DataFrame:
    """Every run of the table through the one scheduler (finished cells reused), then results.csv, summary.csv,
    the effects and report.html."""
    from ..data.schema import read_table
    from ._comoto_data import check_test_split, claim_test_split, ensure_comoto_dbt, split_composition
    from ._comoto_runs import comoto_specs, student_dir, write_result
    from ._runs import execute

    out = Path(cfg.out_dir)
    _claim_out_dir(out, cfg)
    ensure_comoto_dbt(Path(cfg.dbt_dir), cfg.synth_n[0], cfg.dbt_synth, typer.echo)
    _synth("mammo", Path(cfg.mammo_dir), cfg.synth_n[1])
    dbt_root = Path(cfg.dbt_dir)
    dbt_man = read_table(dbt_root / "manifest.csv").astype({"image_id": str})
    composition = split_composition(dbt_man, read_table(dbt_root / "lesions.csv").astype({"image_id": str}))
    check_test_split(composition, cfg.min_test_lesion_volumes)
    claim_test_split(out, dbt_man, composition)
    specs = comoto_specs(cfg, out)  # every config validated here, before anything trains
    execute(specs, out / "configs", jobs=cfg.jobs, threads=cfg.threads, devices=cfg.gpus, echo=typer.echo)
    results: list[dict[str, Any]] = []
    for seed in cfg.seeds:
        for fraction in cfg.fractions:
            for row in cfg.rows:
                run_dir = student_dir(out, seed, fraction, row)
                done = run_dir / "result.json"
                res = json.loads(done.read_text()) if done.is_file() else write_result(run_dir, seed, fraction, row)
                results.append(res)
                typer.echo(f"seed {seed} frac {fraction:g} {row:12s} mean sens BCS scale "
                           f"{res['scaled_mean_sensitivity_positive']:.3f} (raw "
                           f"{res['raw_mean_sensitivity_positive']:.3f})")  # fmt: skip
    table = pd.DataFrame(results)
    table.to_csv(out / "results.csv", index=False)
    summary = _summary(table)
    summary.to_csv(out / "summary.csv", index=False)
    effects = comoto_effects(_predictions(out, table), dbt_test_truth(cfg), cfg.n_boot)
    write_effects(out, effects)
    (out / "report.html").write_text(_report(cfg, table, summary, effect_sections(effects), composition))
    (out / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2))
    return table


def _predictions(out: Path, table: pd.DataFrame) -> dict[tuple[int, float, str], pd.DataFrame]:
    """Every run's volume predictions (stored pixels), keyed (seed, fraction, row)."""
    runs = {}
    for r in table[["seed", "fraction", "row"]].itertuples(index=False):
        path = out / f"seed{r.seed}" / f"frac{r.fraction:g}" / r.row / "predictions_volume.csv"
        runs[(int(r.seed), float(r.fraction), str(r.row))] = pd.read_csv(path, dtype={"StudyUID": str, "View": str})
    return runs


def _claim_out_dir(out: Path, cfg: ComotoExperimentConfig) -> None:
    """Refuse an out_dir whose runs used another detector, else record this one in ``comoto_detector.json``.

    Finished runs are reused and interrupted ones resumed from their checkpoints, whose weights have the same
    shapes whatever the C5 stride: a mismatch would silently mix detectors. Runs older than that file were made
    before ``dilate_c5`` existed, i.e. without it.
    """
    from ..errors import UserError

    want = cfg.model_dump(mode="json", include=set(MODEL_KEYS))
    path = out / "comoto_detector.json"
    if path.is_file():
        have = json.loads(path.read_text())
    elif any(out.glob("seed*")):
        have = {**want, "dilate_c5": False}
    else:
        have = want
    if have != want:
        diff = ", ".join(f"{k}: {have.get(k)} there, {want[k]} now" for k in MODEL_KEYS if have.get(k) != want[k])
        raise UserError(f"{out} holds CoMoTo runs of another detector ({diff}): choose another out_dir")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(want, indent=1))


def _summary(table: pd.DataFrame) -> pd.DataFrame:
    cols = ["scaled_mean_sensitivity_positive", "scaled_sensitivity_at_2_fps_all", "raw_mean_sensitivity_positive"]
    cols += [c for c in ENTROPY_COLS if c in table]
    g = table.groupby(["fraction", "row"], sort=False)[cols]
    s = g.mean().add_suffix("_mean").join(g.std(ddof=1).add_suffix("_sd")).join(g.size().rename("n_seeds"))
    return s.reset_index()


def _fmt(value: float) -> str:
    """A diagnostic to 4 decimals, "—" where a run has none (rows without LsKD)."""
    return f"{value:.4f}" if np.isfinite(value) else "—"


def _report(
    cfg: ComotoExperimentConfig,
    table: pd.DataFrame,
    summary: pd.DataFrame,
    effects: list[tuple[str, str]],
    composition: dict[str, int],
) -> str:
    from ..reports.html import page
    from ..reports.html import table as html_table

    def pm(r: pd.Series, key: str) -> str:
        mean, sd = r.get(f"{key}_mean", np.nan), r.get(f"{key}_sd", np.nan)
        if not np.isfinite(mean):
            return "—"  # a row that does not distil (no LsKD entropy), or results from before it was logged
        return f"{mean:.3f}" + ("" if not np.isfinite(sd) else f" ± {sd:.3f}")

    keys = ["scaled_mean_sensitivity_positive", "scaled_sensitivity_at_2_fps_all", "raw_mean_sensitivity_positive"]
    rows = [[f"{r['fraction']:g}", r["row"], int(r["n_seeds"]), *(pm(r, k) for k in keys + ENTROPY_COLS)]
            for _, r in summary.iterrows()]  # fmt: skip
    head = ["DBT fraction", "row", "seeds", "mean sens 1–4 FP/vol (BCS scale, primary)",
            "sens @2 FP/vol all (BCS scale)", "mean sens 1–4 FP/vol (raw px, secondary)",
            "teacher 9-point entropy (max log 9)", "LsKD loss"]  # fmt: skip
    per_keys = ["seed", "fraction", "row", "dbt_stacks", "dbt_positive_slices", *keys[::2]]
    per = [[r[k] for k in per_keys] + [_fmt(r.get(k, np.nan)) for k in ENTROPY_COLS] for _, r in table.iterrows()]
    meta = [
        f"RetinaNet backbone {cfg.backbone} (C5 only: {not cfg.fpn}, dilated C5: {cfg.dilate_c5}), images "
        f"{cfg.size}, teacher {cfg.teacher_steps} steps, students {cfg.student_steps} steps, batch "
        f"{cfg.batch_size}, {cfg.optimizer} lr {cfg.lr}",
        f"LsKD / image KD: T = {cfg.temperature}, α = {cfg.alpha}; ImPA β = {cfg.impa_beta}; seeds {cfg.seeds}",
        f"DBT test split: {composition['test_volumes']} volumes of {composition['test_exams']} exams, "
        f"{composition['test_lesion_volumes']} with a lesion ({composition['test_lesions']} lesions), "
        f"{'generated apart from the training data, enriched' if cfg.dbt_synth else 'the one generator run'}; "
        f"{composition['train_exams']} training exams. CIs: {cfg.n_boot} replicates of a bootstrap over seeds × "
        "test exams (exams with a lesion and the others resampled apart).",
        "Metric: BCS-DBT FROC (froc_dbt) over the test volumes after per-slice detection and cross-slice merging. "
        "Primary, 'BCS scale': coordinates scaled to 2457-px-high volumes (the box centre must lie within half a "
        "lesion diagonal). Secondary, 'raw px': synthetic coordinates (the 100-px floor makes any box in the right "
        "slices a hit).",
        f"LsKD diagnostics, mean over the logged training steps: the entropy of the teacher's softmax(t/T) over the "
        f"9 lesion points, averaged over channels (log 9 = {math.log(9):.4f} when the 9 points are "
        "indistinguishable), and loss_lskd.",
    ]
    sections = [*effects, ("Mean over seeds (± SD)", html_table(head, rows)),
                ("Every run", html_table(["seed", "fraction", "row", "DBT stacks", "positive slices",
                                          "mean sens (BCS scale)", "mean sens (raw)", "teacher entropy",
                                          "LsKD loss"], per))]  # fmt: skip
    return page("CoMoTo: mammography → DBT lesion distillation", meta, sections)


def register(app: typer.Typer) -> None:
    @app.command("comoto")
    def comoto(
        config: Path = typer.Option(Path("configs/comoto_demo.yaml"), "--config", "-c", help="experiment YAML"),
        set_: list[str] = typer.Option([], "--set", "-s", help="override key=value (repeatable)"),
    ) -> None:
        """CoMoTo table: DBT-only, pretraining, image-level KD, LsKD, LsKD + ImPA at full and 10% DBT data."""
        from ..config import load_config

        cfg = load_config(ComotoExperimentConfig, config, set_)
        run_comoto(cfg)
        typer.echo(f"report: {Path(cfg.out_dir) / 'report.html'}")
