"""Synthetic mammography for the self-training experiment, with separately generated, powered val/test splits.

DESIGN §11: the test split must be large enough that the CI of an effect is narrower than the effect. The
demo set's natural split gives ~100 test exams (a sensitivity CI of about ±0.1); here the training set
(``n`` exams, seed ``seed``: the same exams as ``breastssl synth mammo --n n --seed seed``, of which only its
``train`` rows are kept) is joined by a ``val`` and a ``test`` split generated apart, with seeds
``seed + 1000`` and ``seed + 2000``, every exam of them in that split. Their ids (image, exam, patient,
lesion) get a ``val-`` / ``test-`` prefix, so no patient is in two splits. The evaluation sets keep the
generator's exam mix (the FPPI of an FROC is over all images, normal ones included, so enriching the set
would change what an FP per image means); 1,200 exams hold ~1,700 lesions in ~1,560 images of ~670 exams.

This mirrors ``_dbt_data`` (and reuses its id-prefixing); the mammography manifest adds ``report_path``.
Layout under ``root``: ``train_set/``, ``powered_val/``, ``powered_test/`` (each a ``breastssl synth mammo``
output) and the merged ``manifest.csv`` + ``lesions.csv``, the manifest written last (its presence means the
data is complete; a set finished before an interruption is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ._dbt_data import _prefixed

EVAL_PREFIXES = ("val-", "test-")


@dataclass(frozen=True)
class MammoSplits:
    """What to generate: ``n`` training-set exams and the sizes of the separately generated val/test splits."""

    n: int = 400
    seed: int = 0
    val_exams: int = 0  # 0: no separate val split (the training set's natural val rows are then used)
    test_exams: int = 0  # 0: no separate test split

    @property
    def powered(self) -> bool:
        return self.val_exams > 0 or self.test_exams > 0


def is_powered(manifest: pd.DataFrame) -> bool:
    """Whether a manifest came from :func:`ensure_mammo_data` with separate eval splits (prefixed exam ids)."""
    return bool(manifest["exam_id"].astype(str).str.startswith(EVAL_PREFIXES).any())


def _parts(spec: MammoSplits) -> list[tuple[str, int, int, str, str | None, list[str]]]:
    """(folder, exams, seed, id prefix, split or None for the training set, generator overrides) per set."""
    every = ["splits={'test': 1.0}"]  # every exam of an eval set lands in one split; relabelled on merge
    parts = [("train_set", spec.n, spec.seed, "", None, [])]
    if spec.val_exams:
        parts.append(("powered_val", spec.val_exams, spec.seed + 1000, "val-", "val", every))
    if spec.test_exams:
        parts.append(("powered_test", spec.test_exams, spec.seed + 2000, "test-", "test", every))
    return parts


def _merged_set(folder: Path, sub: str, prefix: str, split: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One set's manifest and lesions, ids prefixed and paths relative to the parent folder."""
    man, les = _prefixed(folder, sub, prefix, split)
    man["report_path"] = sub + "/" + man["report_path"].astype(str)
    if "lesion_id" in les:
        les["lesion_id"] = prefix + les["lesion_id"].astype(str)
    return man, les


def ensure_mammo_data(root: Path, spec: MammoSplits, echo: Callable[[str], object] = print) -> Path:
    """Generate the data into ``root`` unless ``root/manifest.csv`` exists; returns ``root``.

    Without eval splits this is one ``synth mammo`` run (the demo layout); with them see the module doc.
    """
    from ..data.synth.run import run_synth
    from ..fsutil import atomic_file

    if (root / "manifest.csv").is_file():
        return root
    if not spec.powered:
        run_synth("mammo", root, spec.n, spec.seed, "npy", quiet=True)
        return root
    mans, less = [], []
    for sub, n, seed, prefix, split, sets in _parts(spec):
        folder = root / sub
        if not (folder / "manifest.csv").is_file():
            echo(f"generating {n} synthetic mammography exams into {folder} (seed {seed})")
            run_synth("mammo", folder, n, seed, "npy", overrides=sets, quiet=True, overwrite=True)
        man, les = _merged_set(folder, sub, prefix, split)
        mans.append(man)
        less.append(les)
    with atomic_file(root / "lesions.csv") as tmp:
        pd.concat(less, ignore_index=True).to_csv(tmp, index=False)
    with atomic_file(root / "manifest.csv") as tmp:  # last: its presence means the data is complete
        pd.concat(mans, ignore_index=True).to_csv(tmp, index=False)
    return root
