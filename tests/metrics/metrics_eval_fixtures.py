"""Tiny manifest, lesions and prediction files for the evaluate CLI tests (a helper module, not a test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make_dataset(root: Path, n_exams: int = 12, seed: int = 0, modality: str = "MG") -> tuple[Path, pd.DataFrame]:
    """Write manifest.csv and lesions.csv (one lesion per cancer/benign image) under ``root``."""
    rng = np.random.default_rng(seed)
    rows, lesions = [], []
    for e in range(n_exams):
        label = ["cancer", "normal", "benign"][e % 3]
        for lat in "LR":
            for view in ("CC", "MLO"):
                iid = f"e{e}_{lat}_{view}"
                lab = label if lat == "L" else "normal"
                rows.append(
                    dict(
                        image_id=iid, patient_id=f"p{e}", exam_id=f"e{e}", laterality=lat, view=view,
                        modality=modality, vendor=["hologic", "ge"][e % 2], site="s1", path=f"{iid}.dcm",
                        n_slices=40 if modality == "DBT" else 1, breast_label=lab, annotation="full", split="test",
                    )
                )  # fmt: skip
                if lab != "normal":
                    x, y = rng.integers(100, 400, 2)
                    cls = "malignant" if lab == "cancer" else "benign"
                    lesions.append(
                        dict(
                            image_id=iid, exam_id=f"e{e}", laterality=lat, view=view, lesion_id=f"{iid}_0",
                            slice=20 if modality == "DBT" else -1, x=x, y=y, w=60, h=50, mask_path="",
                            lesion_class=cls,
                        )
                    )  # fmt: skip
    man = pd.DataFrame(rows)
    root.mkdir(parents=True, exist_ok=True)
    man.to_csv(root / "manifest.csv", index=False)
    pd.DataFrame(lesions).to_csv(root / "lesions.csv", index=False)
    return root / "manifest.csv", man


def image_scores(man: pd.DataFrame, seed: int, signal: float = 1.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = (man["breast_label"] == "cancer").to_numpy(float)
    return pd.DataFrame(
        {"image_id": man["image_id"], "score": 1 / (1 + np.exp(-(signal * y + rng.normal(size=y.size))))}
    )
