"""`--format folder`: a DICOM tree with FFDM, an enhanced DBT, a legacy one-slice-per-file series and a cine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from conftest import SOP_US_MF, breast, enhanced_dbt, make_ds, save

from breastssl.cli import main
from breastssl.data.dicom import read_image


def _archive(root: Path) -> None:
    study = pydicom.uid.generate_uid()
    mg = make_ds(breast(), ImageLaterality="L", ViewPosition="CC", WindowCenter=2000, WindowWidth=4000)
    mg.StudyInstanceUID = study
    save(mg, root / "pat1" / "mg" / "a.dcm")
    dbt = enhanced_dbt(np.stack([breast(side="right")] * 3), [(2000, 4000)] * 3, lat="R")
    dbt.StudyInstanceUID = study
    save(dbt, root / "pat1" / "dbt" / "b.dcm")
    series = pydicom.uid.generate_uid()
    for z in range(4):
        ds = make_ds(breast(), ImageLaterality="L", ViewPosition="MLO", WindowCenter=2000, WindowWidth=4000)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, z + 1
        ds.ImagePositionPatient = [0, 0, float(z)]
        save(ds, root / "pat1" / "legacy" / f"IM{z:04d}")  # no suffix: found by the DICM magic
    cine = make_ds(np.zeros((5, 6, 8, 3), np.uint8), SOP_US_MF, "US", "RGB", 8, frames=True, Laterality="R")
    cine.PatientID = "OTHER-PATIENT"
    save(cine, root / "pat2" / "us.dcm")
    (root / "pat2" / "notes.txt").write_text("not dicom")


def test_folder_ingest_groups_series_and_joins_labels(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    _archive(root)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"patient_id": ["SECRET-ID-123"], "laterality": ["L"], "breast_label": ["cancer"]}).to_csv(
        labels, index=False
    )
    out = tmp_path / "out" / "manifest.parquet"
    assert main(["ingest", "--format", "folder", "--root", str(root), "--out", str(out), "--labels", str(labels)]) == 0
    m = pd.read_parquet(out).set_index("path")
    assert len(m) == 4
    kinds = {Path(p).name: r for p, r in m.iterrows()}
    assert (
        kinds["legacy"]["modality"] == "DBT" and kinds["legacy"]["n_slices"] == 4 and kinds["legacy"]["view"] == "MLO"
    )
    assert (
        kinds["b.dcm"]["modality"] == "DBT" and kinds["b.dcm"]["n_slices"] == 3 and kinds["b.dcm"]["laterality"] == "R"
    )
    assert kinds["a.dcm"]["modality"] == "MG" and kinds["a.dcm"]["breast_label"] == "cancer"
    assert (
        kinds["us.dcm"]["modality"] == "US"
        and kinds["us.dcm"]["n_slices"] == 5
        and kinds["us.dcm"]["breast_label"] == "unknown"
    )
    assert m.loc[m.modality != "US", "exam_id"].nunique() == 1 and m["patient_id"].nunique() == 2
    text = m.to_csv()
    assert "SECRET-ID-123" not in text and "Secret Hospital" not in text
    legacy = next(p for p in m.index if "legacy" in p)
    row = m.loc[legacy].to_dict()
    assert read_image(out.parent / legacy, row).pixels.shape == (4, 40, 32)
