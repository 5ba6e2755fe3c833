"""Synthetic DBT data for the SelectiveKD experiments, with separately generated, powered evaluation sets.

DESIGN §11: a test split must be large enough that the CI of an effect of 0.01–0.05 AUC is narrower than
the effect. The training set (``n`` exams, the paper's vendor and class mix) gives the ``train`` split (its natural
val/test rows stay in ``train_set/manifest.csv`` only); the ``val`` and ``test`` splits are generated apart, with other
seeds, enriched in cancers and vendor-balanced like a reader study (``eval_cancer_share`` of the exams
have a cancer breast, each vendor a third), so every vendor has hundreds of cancer breasts. Their ids get
a ``val-`` / ``test-`` prefix, so no patient is in two splits.

Layout under the recipe's manifest folder: ``train_set/``, ``powered_val/``, ``powered_test/`` (each a
``breastssl synth dbt`` output), and the merged ``manifest.csv`` + ``lesions.csv``, written last.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from pydantic import Field

from ..config import Section
from ..errors import UserError

ID_COLUMNS = ("image_id", "exam_id", "patient_id")


class SynthSpec(Section):
    """Synthetic DBT data generated into the recipe's manifest folder when that folder has no manifest."""

    n: int = Field(600, ge=4, description="exams of the training set (the generator's train share of them trains)")
    seed: int = 0
    val_exams: int | None = Field(None, ge=4, description="exams of a separately generated, enriched val split")
    test_exams: int | None = Field(None, ge=4, description="exams of a separately generated, enriched test split")
    eval_cancer_share: float = Field(0.6, gt=0, lt=1, description="share of eval exams with a cancer breast")
    eval_vendor_balanced: bool = Field(True, description="eval exams split equally over the vendors")
    set: list[str] = Field([], description="generator overrides for every set, e.g. lesion_depth_factor=4")

    @property
    def powered(self) -> bool:
        return self.val_exams is not None or self.test_exams is not None


def _eval_overrides(spec: SynthSpec) -> list[str]:
    rest = 1.0 - spec.eval_cancer_share  # benign : normal kept at the generator's 45 : 35
    mix = {"cancer": spec.eval_cancer_share, "benign": rest * 45 / 80, "normal": rest * 35 / 80}
    sets = [*spec.set, f"exam_mix={mix}", "splits={'test': 1.0}"]
    if spec.eval_vendor_balanced:
        sets.append("vendor_weights=[1.0, 1.0, 1.0]")
    return sets


def _prefixed(folder: Path, sub: str, prefix: str, split: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A generated set's manifest and lesions with ids prefixed, paths made relative to the parent folder."""
    man = pd.read_csv(folder / "manifest.csv", dtype={c: str for c in ID_COLUMNS})
    les_path = folder / "lesions.csv"
    les = pd.read_csv(les_path, dtype={"image_id": str, "exam_id": str}) if les_path.is_file() else pd.DataFrame()
    for df in (man, les):
        for col in ID_COLUMNS:
            if col in df:
                df[col] = prefix + df[col].astype(str)
    man["path"] = sub + "/" + man["path"].astype(str)
    if "mask_path" in les:
        les["mask_path"] = [f"{sub}/{p}" if isinstance(p, str) and p else p for p in les["mask_path"]]
    if split is not None:
        man["split"] = split
    else:  # the training set: its own natural val/test rows stay in train_set/manifest.csv only
        man = man[man["split"].astype(str) == "train"]
        les = les[les["image_id"].isin(set(man["image_id"]))] if len(les) else les
    return man, les


def ensure_dbt_data(manifest: Path, synth: SynthSpec | None, echo=print) -> None:
    """Generate synthetic DBT data where ``manifest`` is expected, if allowed and missing."""
    from ..data.synth.run import run_synth
    from ..fsutil import atomic_file

    if manifest.is_file():
        return
    if synth is None:
        raise UserError(f"{manifest}: no manifest (set synth to generate synthetic data there)")
    root = manifest.parent
    if not synth.powered:
        echo(f"generating {synth.n} synthetic DBT exams into {root} (seed {synth.seed})")
        run_synth("dbt", root, n=synth.n, seed=synth.seed, fmt="npy", overrides=list(synth.set), quiet=True)
        return
    parts = [("train_set", synth.n, synth.seed, "", None, list(synth.set))]
    if synth.val_exams:
        parts.append(("powered_val", synth.val_exams, synth.seed + 1000, "val-", "val", _eval_overrides(synth)))
    if synth.test_exams:
        parts.append(("powered_test", synth.test_exams, synth.seed + 2000, "test-", "test", _eval_overrides(synth)))
    mans, less = [], []
    for sub, n, seed, prefix, split, sets in parts:
        folder = root / sub
        if not (folder / "manifest.csv").is_file():  # a set finished before an interruption is kept
            echo(f"generating {n} synthetic DBT exams into {folder} (seed {seed}{', enriched' if split else ''})")
            run_synth("dbt", folder, n=n, seed=seed, fmt="npy", overrides=sets, quiet=True, overwrite=True)
        man, les = _prefixed(folder, sub, prefix, split)
        mans.append(man)
        less.append(les)
    lesions = pd.concat(less, ignore_index=True)
    with atomic_file(root / "lesions.csv") as tmp:
        lesions.to_csv(tmp, index=False)
    with atomic_file(manifest) as tmp:  # last: its presence means the data is complete
        pd.concat(mans, ignore_index=True).to_csv(tmp, index=False)
