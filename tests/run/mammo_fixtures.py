"""Tiny synthetic mammography data for the recipe tests: 8 exams and soft labels from the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synth_mammo_with_labels(root: Path) -> Path:
    """8 synthetic exams (32 images) in ``root`` and labels.csv with soft labels per exam × side written from the
    truth (0.97 / 0.03: the tests are of the recipe, not of the report labeller); returns ``root``."""
    from breastssl.commands.synth import run_synth

    run_synth("mammo", root, n=8, seed=0, fmt="npy", quiet=True)
    manifest = pd.read_csv(root / "manifest.csv", dtype=str)
    sides = manifest.groupby(["exam_id", "laterality"])["mass_label"].agg(lambda s: (s == "positive").any())
    labels = sides.rename("positive").reset_index()
    labels["soft_label"] = np.where(labels["positive"], 0.97, 0.03)
    labels[["exam_id", "laterality", "soft_label"]].to_csv(root / "labels.csv", index=False)
    return root
