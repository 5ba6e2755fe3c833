"""``--dicom-sr`` / ``--dicom-seg`` of ``breastssl predict --run``: the DICOM exports riding on one prediction.

:func:`clinical_outputs` opens the export folders (atomically, like OUT) and yields a :class:`ClinicalOutputs` that
the family's predictor uses twice: :meth:`~ClinicalOutputs.check` as soon as it knows its inputs (every input must be
DICOM, so a wrong input fails before any scoring), and :meth:`~ClinicalOutputs.write` inside its own atomic write of
OUT, once OUT's files are complete. A failure anywhere leaves none of OUT, SR_OUT and SEG_OUT behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

SEG_FAMILIES = {"dbt", "mammo"}  # families whose models have a segmentation head (a probability map to export)


@dataclass
class ClinicalOutputs:
    """Where the SR and SEG files go (temporary folders of the atomic writes), and what names the algorithm."""

    run_name: str
    family: str
    sr_dir: Path | None = None
    seg_dir: Path | None = None

    @property
    def flags(self) -> str:
        return " and ".join(f for f, d in (("--dicom-sr", self.sr_dir), ("--dicom-seg", self.seg_dir)) if d)

    def check(self, paths: Iterable[str | Path]) -> None:
        """A UserError naming the first input that is not DICOM (a legacy series folder counts as DICOM)."""
        from ..data.dicom_pixels import is_dicom_file

        for p in map(Path, paths):
            if not p.is_dir() and not is_dicom_file(p):
                raise UserError(f"{p}: not a DICOM file; {self.flags} reference the source DICOM images, so every "
                                "input must be DICOM (leave the option out for .npy / PNG inputs)")  # fmt: skip

    def write(self, out: Path) -> None:
        """Write the SR and/or SEG files from the complete (temporary) predict output folder ``out``."""
        if self.sr_dir is not None:
            from .dicom_sr import write_reports

            write_reports(out, self.sr_dir, self.run_name, self.family)
        if self.seg_dir is not None:
            from .dicom_seg import write_segmentations

            write_segmentations(out, self.seg_dir, self.run_name, self.family)


def _inside(a: Path, b: Path) -> bool:
    a, b = a.resolve(), b.resolve()
    return a == b or b in a.parents


@contextlib.contextmanager
def clinical_outputs(
    run_name: str, family: str, out: Path, sr: Path | None, seg: Path | None, overwrite: bool = False
) -> Iterator[ClinicalOutputs | None]:
    """The export folders ``sr`` / ``seg`` (None: not asked for) as atomic writes around the prediction into ``out``.

    Refused before any work: SEG for a family without a segmentation head, export folders that overlap OUT or each
    other, and (unless ``overwrite``) export folders that exist and are not empty.
    """
    if sr is None and seg is None:
        yield None
        return
    from ..fsutil import atomic_dir

    if seg is not None and family not in SEG_FAMILIES:
        raise UserError(
            f"--dicom-seg: a {family} run's model has no segmentation head (it gives boxes and scores, not a "
            "probability map), so there is no DICOM SEG to write; --dicom-sr exports its findings"
        )
    named = [(flag, Path(p)) for flag, p in (("--out", out), ("--dicom-sr", sr), ("--dicom-seg", seg)) if p is not None]
    for i, (fa, a) in enumerate(named):
        for fb, b in named[i + 1 :]:
            if _inside(a, b) or _inside(b, a):
                raise UserError(f"{fa} {a} and {fb} {b} overlap: give each output its own folder")
    with contextlib.ExitStack() as stack:
        outputs = ClinicalOutputs(run_name, family)
        if sr is not None:
            outputs.sr_dir = stack.enter_context(atomic_dir(sr, overwrite=overwrite))
        if seg is not None:
            outputs.seg_dir = stack.enter_context(atomic_dir(seg, overwrite=overwrite))
        yield outputs
