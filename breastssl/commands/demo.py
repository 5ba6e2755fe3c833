"""`breastssl demo`: the whole pipeline on embedded synthetic data.

1. Generate a small DBT, mammography and ultrasound dataset as real DICOM, validate the manifests, read every
   image back through the same DICOM readers that real archives go through, and print a summary.
2. Run the SelectiveKD experiment at demo scale: synthetic DBT (3 vendors, Hologic annotated) → Baseline
   teacher → KD, KD*, SelectiveKD, SelectiveKD* students, two seeds, on a separately generated, enriched
   test split → Table 1 report with CIs over seeds × test cases, paired effects and DeLong tests.
3. Predict with the SelectiveKD* student on the DICOM test studies of step 1: scores per slice, stack,
   breast and exam, and heatmap overlays of the top slices.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from .common import OverwriteOpt, console


def read_back(root: Path) -> dict:
    """Validate ``root``'s manifest and read every file through :func:`read_image`; return a summary."""
    from ..data.dicom import read_image
    from ..data.schema import load_dataset

    manifest, lesions = load_dataset(root / "manifest.csv")
    mismatched, shapes = 0, set()
    for row in manifest.to_dict("records"):
        img = read_image(root / row["path"], row)
        shapes.add(tuple(img.pixels.shape[-3:] if img.pixels.ndim == 4 else img.pixels.shape))
        mismatched += img.meta.get("laterality") not in (None, "", row["laterality"])
    return {
        "images": len(manifest),
        "lesions": 0 if lesions is None else len(lesions),
        "vendors": ", ".join(sorted(manifest["vendor"].unique())),
        "labels": manifest["breast_label"].value_counts().to_dict(),
        "laterality_mismatch": int(mismatched),
        "example_shape": sorted(shapes)[0],
    }


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("runs/demo"), "--out", "-o", help="folder for the demo's data and outputs"),
        seed: int = typer.Option(0, "--seed", help="random seed of the synthetic data"),
        n: int = typer.Option(40, "--n", min=1, help="exams (DBT, mammography) and images (ultrasound)"),
        overwrite: bool = OverwriteOpt,
        exams: int = typer.Option(600, "--exams", min=1, help="synthetic DBT exams of the SelectiveKD experiment"),
        steps: int = typer.Option(800, "--steps", min=1, help="training steps of each of the five models"),
        jobs: int = typer.Option(2, "--jobs", min=1, help="models trained at the same time (one CPU thread each)"),
        seeds: int = typer.Option(
            2, "--seeds", min=1, help="training seeds of the SelectiveKD experiment (benchmark: 5)"
        ),
        test_exams: int = typer.Option(
            900, "--test-exams", min=1, help="exams of the separately generated, enriched, vendor-balanced test split"
        ),
        data_only: bool = typer.Option(False, "--data-only", help="only generate and read back the data"),
    ) -> None:
        """Synthetic data → read back → SelectiveKD Table 1 (teacher + 4 students) → DBT predictions."""
        from .synth import run_synth

        table = Table(title=f"breastssl demo data in {out}/data")
        for col in ("modality", "images", "lesions", "vendors / sites", "breast labels", "pixels (read back)"):
            table.add_column(col)
        for modality in ("dbt", "mammo", "us"):
            target = out / "data" / modality
            run_synth(modality, target, n, seed, "dicom", preview=True, overwrite=overwrite)
            s = read_back(target)
            if s["laterality_mismatch"]:
                console.print(
                    f"[red]{modality}: {s['laterality_mismatch']} images whose tags disagree with the manifest"
                )
            labels = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
            table.add_row(
                modality,
                str(s["images"]),
                str(s["lesions"]),
                s["vendors"],
                labels,
                "×".join(map(str, s["example_shape"])),
            )
        console.print(table)
        console.print(f"previews: {out}/data/<modality>/preview.png; statistics: {out}/data/<modality>/dataset.json")
        if not data_only:
            run_dbt_demo(out, seed, exams, steps, jobs, seeds, test_exams)


def demo_recipe() -> Path:
    """configs/dbt_selectivekd_demo.yaml of the working directory, else of the source tree."""
    from ..errors import UserError

    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / "configs" / "dbt_selectivekd_demo.yaml").is_file():
            return root / "configs" / "dbt_selectivekd_demo.yaml"
    raise UserError("configs/dbt_selectivekd_demo.yaml not found: run the demo from the breastssl source tree")


def run_dbt_demo(
    out: Path, seed: int, exams: int, steps: int, jobs: int, seeds: int = 2, test_exams: int = 900
) -> None:
    """The SelectiveKD experiment at demo scale, then predictions on the DICOM test studies.

    Training data as the benchmark's (``exams`` of the paper's mix); the test split is generated apart,
    enriched and vendor-balanced (``test_exams``), and the students use the composition, student_init and T
    that the powered benchmark chose on its validation split (``configs/dbt_selectivekd_validated.yaml``).
    """
    from ..config import read_yaml
    from ..experiments.dbt_selectivekd import DBTSelectiveKDConfig, SynthSpec, run_experiment

    data = out / "data" / "dbt_train"
    cfg = DBTSelectiveKDConfig(
        out_dir=str(out / "dbt_selectivekd"),
        recipe=str(demo_recipe()),
        set=[f"data.manifest={data / 'manifest.csv'}", f"train.steps={steps}", f"train.ckpt_every={steps}",
             "train.tensorboard=false", f"train.schedule.warmup_steps={max(steps // 20, 1)}"],
        seeds=list(range(seed, seed + max(seeds, 1))),
        choice=read_yaml(demo_recipe().with_name("dbt_selectivekd_validated.yaml"))["choice"],
        synth=SynthSpec(n=exams, seed=seed, test_exams=test_exams),
        jobs=jobs,
    )  # fmt: skip
    console.print(f"[bold]SelectiveKD at demo scale[/]: {exams} training exams, {test_exams} test exams, "
                  f"5 models × {len(cfg.seeds)} seeds × {steps} steps, {jobs} at a time")  # fmt: skip
    res = run_experiment(cfg, echo=console.print)
    _print_results(res, cfg.seeds)
    console.print(f"report: {Path(cfg.out_dir) / 'report.html'}")
    predict_demo(Path(cfg.out_dir) / f"seed{seed}", out)


def _print_results(res: dict, seeds: list[int]) -> None:
    """Mean AUC [CI] per setting and vendor, and each setting's paired Δ vs the Baseline [CI]."""
    from ..experiments._dbt_tables import LABELS

    cis, eff = res["setting_cis"], res["effects"]
    groups = ["overall", *sorted(set(cis["group"]) - {"overall"})] if len(cis) else ["overall"]
    table = Table(title=f"breast-level AUC, mean of seeds {seeds} [95% CI over seeds × test cases]; Δ vs Baseline")
    for col in ("setting", *groups):
        table.add_column(col)
    for setting in [s for s in LABELS if s in set(cis.get("setting", []))]:
        cells = []
        for g in groups:
            c = cis[(cis["setting"] == setting) & (cis["group"] == g)]
            d = eff[(eff["a"] == setting) & (eff["b"] == "baseline") & (eff["group"] == g)]
            cell = f"{c['auc'].iloc[0]:.3f} [{c['ci_low'].iloc[0]:.3f}, {c['ci_high'].iloc[0]:.3f}]" if len(c) else "–"
            if len(d):
                cell += f"\nΔ {d['delta'].iloc[0]:+.3f} [{d['ci_low'].iloc[0]:+.3f}, {d['ci_high'].iloc[0]:+.3f}]"
            cells.append(cell)
        table.add_row(LABELS[setting], *cells)
    console.print(table)
    for c in res["claims"]:
        mark = {True: "holds", False: "does not hold", None: "n/a"}[c["holds"]]
        console.print(f"  {c['claim']}: {mark} ({c['figures']})")


def predict_demo(runs: Path, out: Path) -> None:
    """Predict with the best available student on the DICOM DBT studies written in step 1."""
    import pandas as pd

    from ..inference import predict_dbt

    setting = next(
        s for s in ("selective_kd_weak", "selective_kd", "baseline") if (runs / s / "metrics.json").is_file()
    )
    target = out / "dbt_predictions"
    stacks = predict_dbt(runs / setting, [out / "data" / "dbt"], target, overwrite=True)
    exams = pd.read_csv(target / "exams.csv").sort_values("score", ascending=False)
    console.print(f"[bold]predict[/] ({setting}) on {len(stacks)} DICOM stacks of {len(exams)} exams → {target}/")
    console.print(
        "  highest exam scores: " + ", ".join(f"{r.exam_id} {r.score:.2f}" for r in exams.head(3).itertuples())
    )
    console.print(f"  heatmaps of the top slices: {target}/heatmaps/")
    from ..reports.viewer import build_viewer

    viewer = build_viewer(target, overwrite=True)
    console.print(f"  study viewer (open in a browser): {viewer.path}")
