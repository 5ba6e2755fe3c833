"""`breastssl label-reports MANIFEST --out labels.csv`: radiology reports → soft labels per exam × side.

Trains the report labeller (seed 002, §3.2) with k-fold cross-validation per breast side on the reports
whose exams carry a label (by default the ``full`` exams' ``mass_label``), averages the fold models into
one soft label for every report, and prints average F1, weighted F1 and accuracy per side. Resumable:
finished folds in ``--work-dir`` are reused.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from .common import OverwriteOpt, console


def register(app: typer.Typer) -> None:
    @app.command("label-reports")
    def label_reports_cmd(
        manifest: Path = typer.Argument(..., help="manifest CSV/Parquet with report_path (and a label column)"),
        out: Path = typer.Option(..., "--out", help="CSV of soft labels: exam_id, laterality, soft_label, ..."),
        model: str = typer.Option("minilm", "--model", help="tfidf | minilm | a Hugging Face model name or path"),
        label_column: str = typer.Option("mass_label", "--label-column", help="truth per image (positive|negative)"),
        train_annotation: str = typer.Option("full", "--train-annotation", help="train on these exams"),
        folds: int = typer.Option(3, "--folds", min=2),
        epochs: int = typer.Option(4, "--epochs", min=1),
        batch_size: int = typer.Option(16, "--batch-size", min=1),
        max_length: int = typer.Option(192, "--max-length", min=16),
        work_dir: Path | None = typer.Option(None, "--work-dir", help="fold checkpoints (default: next to --out)"),
        seed: int = typer.Option(0, "--seed"),
        whole_report: bool = typer.Option(
            False, "--whole-report", help="each side reads the whole report (default: only sentences that can "
            "concern that side, i.e. not those naming only the other side)",
        ),
        overwrite: bool = OverwriteOpt,
    ) -> None:  # fmt: skip
        """Fine-tune a text model on labelled reports (k-fold, per side) and write one soft label per exam × side."""
        from ..data.schema import read_table
        from ..errors import UserError
        from ..fsutil import atomic_file
        from ..nlp import TfidfLabeller, TransformerLabeller, label_reports, report_examples

        if out.exists() and not overwrite:
            raise UserError(f"{out} exists: pass --overwrite to replace it")
        if not manifest.is_file():
            raise UserError(f"manifest {manifest} not found")
        ex = report_examples(read_table(manifest), manifest.parent, label_column, focus_side=not whole_report)
        train = (ex["annotation"] == train_annotation).to_numpy() if train_annotation else None
        if model == "tfidf":
            make = lambda f, s: TfidfLabeller(seed=seed)  # noqa: E731
        else:
            make = lambda f, s: TransformerLabeller(  # noqa: E731
                model, epochs=epochs, batch_size=batch_size, max_length=max_length, seed=seed + f
            )
        work = work_dir or out.with_suffix("").with_name(out.stem + "_folds")
        res = label_reports(ex, make, folds, train, work, seed, log=console.print)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(out) as tmp:
            res.labels.to_csv(tmp, index=False)
        (work / "metrics.json").write_text(json.dumps(res.metrics, indent=1))
        for side, m in res.metrics.items():
            cv, held = m["cv"], m["heldout"]
            console.print(
                f"side {side}: CV avg F1 {cv.get('macro_f1', float('nan')):.3f}, weighted F1 "
                f"{cv.get('weighted_f1', float('nan')):.3f}, accuracy {cv.get('accuracy', float('nan')):.3f} "
                f"(n={cv['n']}); held-out accuracy {held.get('accuracy', float('nan')):.3f} (n={held['n']})"
            )
        console.print(f"wrote {len(res.labels)} soft labels to {out}")
