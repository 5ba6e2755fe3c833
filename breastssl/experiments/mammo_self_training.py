"""``breastssl experiment mammo-self-training``: the self-training paper's (seed 002) tables on synthetic data.

Runs: report labeller (k-fold, per side) → soft labels; then one self-training run per cell of
- Table 3: 10/25/50/100 % of the fully labelled training exams, without and with the weak (report) exams;
- Table 4: hard vs soft mask targets × hard vs soft NLP labels, at 25 % labelled + all weak data;
- Fig. 4: 0/25/50/75/100 % of the weak exams at 25 % labelled.
Subsets are nested and drawn by exam. Every run: FROC on the test split (IoU > 0.2; sensitivity at
0.1, 0.2, 0.5, 1 FPPI and mean). One HTML report, ``results.json``; finished runs are reused.
Every cell (and tune candidate) is one ``breastssl train`` run of the ``mammo`` recipe (:mod:`._selftrain_runs`:
``data.full_fraction`` / ``weak_fraction`` / ``subset_seed`` draw the cell's exams as this experiment always has,
the labeller's soft labels in ``out/labels.csv``), trained by the one scheduler (``jobs`` at a time, ``gpus``).

Measuring the claims (DESIGN §11): ``--val-exams/--test-exams`` generate val and test splits apart from the
training data (``_selftrain_data``); ``--tune`` chooses full_share and the lesion threshold on val before any
main run (``_selftrain_tune``); every run saves its per-image detections and the paired effects of Tables 3, 4
and Fig. 4 get CIs over seeds × test exams (``_selftrain_effects``).

Powered command (measured: ~2.8 h of one core; results in README, "Mammography: self-training"):
``breastssl experiment mammo-self-training --data data/mammo_powered --n-exams 400 --val-exams 400
--test-exams 1200 --tune --seeds 0,1,2,3,4 --labeller minilm --nlp-epochs 10 --steps-per-epoch 20
--round-epochs 6 --p0-every 2 --out runs/mammo_self_training_powered``
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from ..run.recipes.mammo_data import nested_exams  # noqa: F401  (the cells' exam draw, shared with the recipe)
from ._selftrain_data import MammoSplits, ensure_mammo_data, is_powered
from ._selftrain_effects import effects_sections, effects_summary, load_detections
from ._selftrain_tune import TuneSpec, candidate_name, run_tune, tune_spec

FULL_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
WEAK_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
HARD_SOFT = ((False, False), (False, True), (True, False), (True, True))  # (soft_mask, soft_nlp)


def _labels(
    manifest: pd.DataFrame, root: Path, out: Path, labeller: str, seed: int, log: Any, nlp_epochs: int = 4
) -> tuple[pd.DataFrame, dict]:
    from ..nlp import TfidfLabeller, TransformerLabeller, label_reports, report_examples

    ex = report_examples(manifest, root)
    train = ((ex["annotation"] == "full") & (ex["split"] == "train")).to_numpy()
    results = {}
    for kind in ["tfidf"] + ([labeller] if labeller != "tfidf" else []):
        if kind == "tfidf":
            make = lambda f, s: TfidfLabeller(seed=seed)  # noqa: E731
        else:
            make = lambda f, s, name=kind: TransformerLabeller(name, epochs=nlp_epochs, seed=seed + f)  # noqa: E731
        results[kind] = label_reports(ex, make, 3, train, out / "labeller" / kind, seed, log)
    chosen = results[labeller]
    return chosen.labels, {k: r.metrics for k, r in results.items()}


def _cells() -> list[tuple[str, float, float, bool, bool]]:
    """(name, full fraction, weak fraction, soft mask, soft NLP) of every cell: Table 3, Table 4, Fig. 4."""
    cells: list[tuple[str, float, float, bool, bool]] = []
    for f in FULL_FRACTIONS:
        pct = int(f * 100)
        cells += [(f"full{pct}_weak0", f, 0.0, True, True), (f"full{pct}_weak100", f, 1.0, True, True)]
    for sm, sn in HARD_SOFT[:3]:
        cells.append(
            (f"full25_weak100_mask{'soft' if sm else 'hard'}_nlp{'soft' if sn else 'hard'}", 0.25, 1.0, sm, sn)
        )
    return cells + [(f"full25_weak{int(w * 100)}", 0.25, w, True, True) for w in WEAK_FRACTIONS[1:4]]


def _selected(name: str, only: str) -> bool:
    """``only``: comma-separated patterns; a cell runs if a pattern is in its name (``NAME$``: is its name)."""
    pats = [p.strip() for p in only.split(",") if p.strip()]
    return any(name == p[:-1] if p.endswith("$") else p in name for p in pats)


def _over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell over seeds: mean sensitivities (+ SDs), the first seed's curve and mining log, every seed's row."""
    first = runs[0]
    if len(runs) == 1:
        return first
    means = np.array([r["mean"] for r in runs])
    sens = {k: float(np.mean([r["sens"][k] for r in runs])) for k in first["sens"]}
    sens_sd = {k: float(np.std([r["sens"][k] for r in runs], ddof=1)) for k in first["sens"]}
    per = [{"seed": r["seed"], "mean": r["mean"], "sens": r["sens"]} for r in runs]
    return {**first, "mean": float(means.mean()), "mean_sd": float(means.std(ddof=1)), "sens": sens,
            "sens_sd": sens_sd, "n_seeds": len(runs), "per_seed": per}  # fmt: skip


def _cell(name: str) -> tuple[str, float, float, bool, bool]:
    """The :func:`_cells` entry called ``name`` (raises UserError for an unknown one)."""
    from ..errors import UserError

    for c in _cells():
        if c[0] == name:
            return c
    raise UserError(f"unknown cell {name!r}; cells: {[c[0] for c in _cells()]}")


def _check_settings(res: dict[str, Any], run_dir: Path, full_share: float | None, t: float) -> None:
    """A finished run read back must have been trained with the settings asked for (else a rerun after a
    different tune choice would silently mix settings)."""
    from ..errors import UserError

    had = {"full_share": res.get("full_share", full_share), "lesion_threshold": res.get("lesion_threshold", t)}
    if had != {"full_share": full_share, "lesion_threshold": t}:
        raise UserError(f"{run_dir}: finished with {had}, but this experiment asks for full_share {full_share}, "
                        f"t {t}; use another --out")  # fmt: skip


def run_experiment(
    data: Path, out: Path, labeller: str = "tfidf", size: tuple[int, int] = (96, 64), seed: int = 0,
    steps_per_epoch: int = 10, stage1_epochs: int = 16, round_epochs: int = 4, p0_every: int = 2,
    rounds: int = 2, only: str = "", log: Any = print, nlp_epochs: int = 4, seeds: list[int] | None = None,
    full_share: float | None = None, lesion_threshold: float = 0.25, tune: TuneSpec | None = None,
    n_boot: int = 1000, strategy: dict[str, Any] | None = None, jobs: int = 1, threads: int = 1,
    gpus: list[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run every cell (or those ``only`` selects, see :func:`_selected`) for every seed; write results.json and
    report.html.

    ``seed`` fixes the data split of the report labeller (trained once); each of ``seeds`` (default: [seed])
    draws its own nested subsets and initialises its own image models. Without ``seeds``: runs in
    ``runs/NAME``; with: ``runs/seedS/NAME``, and with several every cell of results.json holds the mean
    over seeds (``mean_sd``, ``sens_sd``, ``per_seed``; the curve and mining log of the first seed).
    ``tune``: choose full_share and the lesion threshold on the val split first (``_selftrain_tune``; the
    arguments of those names are then ignored). ``n_boot`` > 0: paired effects and claims with CIs over
    seeds × test exams (``_selftrain_effects``) in results.json, ``effects.csv`` and the report. ``strategy``:
    further :class:`SelfTrainingConfig` settings for every run (one-change experiments, e.g. ``focal_norm``).
    """
    import torch

    from ..data.mammo_pairs import load_pairs
    from ..data.schema import read_table
    from ..errors import UserError
    from ._runs import execute
    from ._selftrain_runs import CellSettings, cell_mapping, cell_spec, read_cell

    torch.set_num_threads(1)
    manifest = read_table(data / "manifest.csv")  # read (and fail) before the experiment folder exists
    lesions = read_table(data / "lesions.csv")
    out.mkdir(parents=True, exist_ok=True)
    powered = is_powered(manifest)
    # powered data: the labeller reads the training exams only (the eval splits need no soft labels)
    label_manifest = manifest[manifest["split"].astype(str) == "train"] if powered else manifest
    labels, nlp_metrics = _labels(label_manifest, data, out, labeller, seed, log, nlp_epochs)
    t = manifest.assign(split=manifest["split"].astype(str))
    # the test images' masks and ids, for the bootstrap over test exams; each run reads its own images
    test_rows = t[t["split"] == "test"]
    test = load_pairs(t[t["exam_id"].isin(set(test_rows["exam_id"]))], lesions, data, size)
    test = test.subset(np.flatnonzero(test.table["split"].astype(str).to_numpy() == "test"))
    nested = bool(seeds)  # --seeds given: runs/seedS/NAME, whatever the number of seeds
    seeds = list(seeds) if seeds else [seed]

    labels_path = out / "labels.csv"
    labels[["exam_id", "laterality", "soft_label"]].to_csv(labels_path, index=False)
    st = CellSettings(data, labels_path, tuple(size), steps_per_epoch, stage1_epochs, rounds, round_epochs, p0_every,
                      dict(strategy or {}))  # fmt: skip
    sched = {"jobs": jobs, "threads": threads, "devices": gpus or [], "echo": log}

    def result(cell: tuple, s: int, fs: float | None, thr: float, run_dir: Path) -> dict:
        res = {**read_cell(run_dir, cell), "seed": s}
        _check_settings(res, run_dir, fs, thr)
        log(f"seed {s} run {run_dir.name}: {res.get('n_full')} full + {res.get('n_weak')} weak images; "
            f"mean sensitivity {res['mean']:.3f}")  # fmt: skip
        return res

    tuned = None
    if tune is not None:
        n_val = int((t["split"] == "val").sum())
        if n_val == 0:
            raise UserError(f"{data}: no val split to tune on")
        cell = _cell(tune.cell)
        tune_dir = out / "tune"
        names = {(s, fs, thr): f"seed{s}/{candidate_name(fs, thr)}" for fs, thr in tune.candidates for s in tune.seeds}
        specs = [cell_spec(f"tune/{n}", cell_mapping(st, cell, s, fs, thr, tune_dir / n, "val"))
                 for (s, fs, thr), n in names.items()]  # fmt: skip
        execute(specs, out / "configs", **sched)
        tuned = run_tune(tune, lambda s, fs, thr, d: result(cell, s, fs, thr, d), out, n_val)
        full_share, lesion_threshold = tuned["choice"]["full_share"], tuned["choice"]["lesion_threshold"]
        log(f"tune: full_share {full_share}, t {lesion_threshold} ({tuned['why']})")
    cells = [c for c in _cells() if not only or _selected(c[0], only)]
    run_dirs = {(s, c[0]): (out / "runs" / f"seed{s}" if nested else out / "runs") / c[0] for s in seeds for c in cells}
    specs = [cell_spec(f"seed{s}/{c[0]}", cell_mapping(st, c, s, full_share, lesion_threshold, run_dirs[(s, c[0])]))
             for s in seeds for c in cells]  # fmt: skip
    execute(specs, out / "configs", **sched)
    per_seed: dict[str, list[dict[str, Any]]] = {}
    dets = {}
    masks, ids = test.masks[:, 0], test.table["image_id"].tolist()
    for s in seeds:
        for cell in cells:
            run_dir = run_dirs[(s, cell[0])]
            res = result(cell, s, full_share, lesion_threshold, run_dir)
            per_seed.setdefault(cell[0], []).append(res)
            if n_boot > 0:
                dets[(s, cell[0])] = load_detections(run_dir, masks, ids, lesion_threshold)
    results = {name: _over_seeds(rs) for name, rs in per_seed.items()}
    exam_of = dict(zip(ids, test.table["exam_id"].astype(str), strict=True))
    effects = effects_summary(dets, exam_of, n_boot, seed) if dets else None
    if effects:
        pd.DataFrame(effects["effects"]).to_csv(out / "effects.csv", index=False)
    n_test_exams = int(test.table["exam_id"].nunique())
    summary = {"nlp": nlp_metrics, "runs": results, "tune": tuned, "effects": effects,
               "settings": {"size": list(size), "labeller": labeller,
               "steps_per_epoch": steps_per_epoch, "stage1_epochs": stage1_epochs, "round_epochs": round_epochs,
               "p0_every": p0_every, "rounds": rounds, "seed": seed, "nlp_epochs": nlp_epochs,
               "seeds": seeds, "full_share": full_share, "lesion_threshold": lesion_threshold,
               "powered_data": powered, "test_exams": n_test_exams, "test_images": len(test),
               "strategy": strategy or {}}}  # fmt: skip
    (out / "results.json").write_text(json.dumps(summary, indent=1))
    (out / "report.html").write_text(render_report(summary), encoding="utf-8")
    return summary


def _row(name: str, r: dict[str, Any], *lead: object) -> list[object]:
    """Sensitivity at 0.1/0.2/0.5/1 FPPI and the mean; ``mean ± SD`` over seeds when there are several."""
    mean = f"{r['mean']:.3f} ± {r['mean_sd']:.3f}" if "mean_sd" in r else r["mean"]
    return [*lead, *(r["sens"][k] for k in ("0.1", "0.2", "0.5", "1")), mean]


def render_report(summary: dict[str, Any]) -> str:
    """One HTML page: the labeller table, Tables 3 and 4, Fig. 4, mining counts."""
    from ..reports.html import figure, page, table
    from ..reports.plots import froc_png

    runs = summary["runs"]
    sens_h = ["FP@0.1", "0.2", "0.5", "1", "mean"]
    nlp_rows = [[kind, side, m["cv"].get("macro_f1"), m["cv"].get("weighted_f1"), m["cv"].get("accuracy"),
                 m["heldout"].get("macro_f1"), m["heldout"].get("weighted_f1"), m["heldout"].get("accuracy")]
                for kind, per in summary["nlp"].items() for side, m in per.items()]  # fmt: skip
    sections = [("Report labeller (3-fold CV on the full exams; held out = report-only exams vs truth)",
                 table(["labeller", "side", "CV avg F1", "CV weighted F1", "CV acc", "held-out avg F1",
                        "held-out weighted F1", "held-out acc"], nlp_rows))]  # fmt: skip
    t3 = [_row(n, runs[n], f"{f}%", w) for f in (10, 25, 50, 100) for w, n in
          (("✗", f"full{f}_weak0"), ("✓", f"full{f}_weak100")) if n in runs]  # fmt: skip
    sections.append(("Table 3: labelled fraction without / with weak data", table(["labelled", "weak", *sens_h], t3)))
    t4 = []
    for sm, sn in HARD_SOFT:
        n = (
            "full25_weak100"
            if sm and sn
            else f"full25_weak100_mask{'soft' if sm else 'hard'}_nlp{'soft' if sn else 'hard'}"
        )
        if n in runs:
            t4.append(_row(n, runs[n], "soft" if sm else "hard", "soft" if sn else "hard"))
    sections.append(("Table 4: hard vs soft labels (25% labelled + all weak)", table(["mask", "NLP", *sens_h], t4)))
    fig_names = [(w, "full25_weak0" if w == 0 else f"full25_weak{w}") for w in (0, 25, 50, 75, 100)]
    f4 = [_row(n, runs[n], f"{w}%") for w, n in fig_names if n in runs]
    curves = {
        f"FL25% WL{w}%": (runs[n]["curve"]["fppi"], runs[n]["curve"]["sensitivity"]) for w, n in fig_names if n in runs
    }
    plot = figure(froc_png(curves, "FROC, 25% labelled", marks=(0.1, 0.2, 0.5, 1)), "FROC") if curves else ""
    sections.append(("Fig. 4: weak data fraction at 25% labelled", table(["weak", *sens_h], f4) + plot))
    mining = [
        [n, h["round"], h["p0"], h["TP"], h["FP"], h["FN"], h["TN"], h["unsure"]]
        for n, r in runs.items()
        for h in r["mining"]
    ]
    sections.append(
        (
            "Mining: tentative TP/FP/FN/TN per table rebuild",
            table(["run", "round", "p0", "TP", "FP", "FN", "TN", "unsure"], mining),
        )
    )
    t = summary["settings"].get("lesion_threshold", 0.25)
    meta = [f"settings: {json.dumps(summary['settings'])}", "FROC: connected components of the probability map "
            f"(≥ t = {t}, the threshold mining's masks use too) scored by their maximum, continued below t by a "
            "sweep of region thresholds (upper envelope); hit when IoU > 0.2; FPPI over all test images."]  # fmt: skip
    sections += effects_sections(summary)
    return page("Self-training with report soft labels (seed 002) — synthetic mammography", meta, sections)


def _parse_seeds(text: str) -> list[int] | None:
    from ..errors import UserError

    try:
        return [int(v) for v in text.split(",") if v.strip()] or None
    except ValueError:
        raise UserError(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None


def register(app: typer.Typer) -> None:
    """Add ``mammo-self-training`` to the ``experiment`` sub-app."""

    @app.command("mammo-self-training")
    def mammo_self_training(
        ctx: typer.Context,
        config: Path | None = typer.Option(None, "--config", "-c", help="experiment YAML (configs/mammo_*.yaml)"),
        set_: list[str] = typer.Option([], "--set", "-s", help="config override key=value (repeatable)"),
        out: Path = typer.Option(Path("runs/mammo_self_training"), "--out", help="experiment directory"),
        data: Path | None = typer.Option(None, "--data", help="mammography dataset dir; default: synthesise one"),
        n_exams: int = typer.Option(200, "--n-exams", help="exams to synthesise when --data is not given"),
        labeller: str = typer.Option("tfidf", "--labeller", help="tfidf | minilm | a Hugging Face model name or path"),
        seed: int = typer.Option(0, "--seed"),
        steps_per_epoch: int = typer.Option(10, "--steps-per-epoch"),
        stage1_epochs: int = typer.Option(16, "--stage1-epochs"),
        round_epochs: int = typer.Option(4, "--round-epochs"),
        p0_every: int = typer.Option(2, "--p0-every"),
        only: str = typer.Option("", "--only", help="run only cells matching: comma-separated substrings, NAME$ exact"),
        nlp_epochs: int = typer.Option(4, "--nlp-epochs", min=1, help="fine-tuning epochs of a transformer labeller"),
        seeds: str = typer.Option("", "--seeds", help="image-model seeds, e.g. 0,1,2 (default: --seed); mean ± SD"),
        full_share: float | None = typer.Option(None, "--full-share", min=0.01, max=1.0,
                                         help="share of each batch's positives/negatives from fully labelled images"),
        lesion_threshold: float = typer.Option(0.25, "--lesion-threshold", min=0.01, max=0.99,
                                               help="t: mining's mask-positive decision and the FROC's regions"),
        val_exams: int = typer.Option(0, "--val-exams", min=0, help="exams of a val split generated apart"),
        test_exams: int = typer.Option(0, "--test-exams", min=0, help="exams of a test split generated apart"),
        tune: bool = typer.Option(False, "--tune", help="choose full_share and t on the val split first"),
        tune_full_shares: str = typer.Option("none,0.5", "--tune-full-shares", help="candidates; none = pooled"),
        tune_thresholds: str = typer.Option("0.25,0.15,0.35", "--tune-thresholds", help="candidates for t"),
        tune_seeds: str = typer.Option("0,1", "--tune-seeds", help="seeds every candidate is trained with"),
        tune_cell: str = typer.Option("full25_weak100", "--tune-cell", help="the cell the candidates train"),
        n_boot: int = typer.Option(1000, "--n-boot", min=0, help="bootstrap replicates of the effects (0: none)"),
    ) -> None:  # fmt: skip
        """The self-training paper's Tables 3 and 4 and Fig. 4 on synthetic mammograms + reports.

        Settings come from --config FILE and --set key=value; a flag typed on the command line overrides them.
        """
        from ..console import console
        from ..data.schema import read_table
        from ..errors import UserError
        from ._selftrain_config import resolve_config

        flags = {k: v for k, v in locals().items() if k not in {"ctx", "config", "set_", "console", "read_table",
                                                                  "UserError", "resolve_config"}}  # fmt: skip
        c = resolve_config(ctx, config, list(set_), flags)
        out, data = Path(c.out), (Path(c.data) if c.data else None)
        n_exams, labeller, seed, steps_per_epoch = c.n_exams, c.labeller, c.seed, c.steps_per_epoch
        stage1_epochs, round_epochs, p0_every, only, nlp_epochs = (c.stage1_epochs, c.round_epochs, c.p0_every,
                                                                    c.only, c.nlp_epochs)  # fmt: skip
        seeds, full_share, lesion_threshold, n_boot = c.seeds, c.full_share, c.lesion_threshold, c.n_boot
        val_exams, test_exams, tune = c.val_exams, c.test_exams, c.tune
        tune_full_shares, tune_thresholds, tune_seeds, tune_cell = (c.tune_full_shares, c.tune_thresholds,
                                                                    c.tune_seeds, c.tune_cell)  # fmt: skip

        splits = MammoSplits(n_exams, seed, val_exams, test_exams)
        if data is None or (splits.powered and not (data / "manifest.csv").is_file()):
            data = ensure_mammo_data(data or out / "data", splits, console.print)
        if splits.powered and not is_powered(read_table(data / "manifest.csv")):
            raise UserError(f"{data}: has no val/test splits generated apart; give --data a new folder")
        try:
            spec = tune_spec(tune_full_shares, tune_thresholds, tune_seeds, tune_cell) if tune else None
        except ValueError as exc:
            raise UserError(f"--tune-*: {exc}") from None
        res = run_experiment(
            data, out, labeller, seed=seed, steps_per_epoch=steps_per_epoch, stage1_epochs=stage1_epochs,
            round_epochs=round_epochs, p0_every=p0_every, only=only, log=console.print, nlp_epochs=nlp_epochs,
            seeds=_parse_seeds(seeds), full_share=full_share, lesion_threshold=lesion_threshold, tune=spec,
            n_boot=n_boot, strategy=c.strategy, jobs=c.jobs, threads=c.threads, gpus=c.gpus,
        )  # fmt: skip
        console.print(f"wrote {out / 'report.html'} ({len(res['runs'])} runs)")
