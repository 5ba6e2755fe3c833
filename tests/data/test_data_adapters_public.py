"""Public-dataset adapters, each on a tiny fixture written in that dataset's published layout."""

from __future__ import annotations

import plistlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import breast, enhanced_dbt, make_ds, save
from PIL import Image as PILImage

from breastssl.commands.ingest import run_ingest
from breastssl.data.datasets import ingest
from breastssl.errors import DataError


def _check(fmt: str, root: Path, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    out = tmp_path / "out" / "manifest.csv"
    run_ingest(fmt, root, out)  # validates manifest + lesions against the schema
    return pd.read_csv(out), pd.read_csv(out.with_name("lesions.csv"))


def test_bcs_dbt(tmp_path: Path) -> None:
    root = tmp_path / "bcs"
    rel = "Breast-Cancer-Screening-DBT/DBT-P00013/01-01-2000-DBT-S00163-MAMMO-33603/9563.000000-NA-57307/1-1.dcm"
    save(enhanced_dbt(np.stack([breast()] * 4), [(2000, 4000)] * 4), root / rel)
    key = {"PatientID": ["DBT-P00013"], "StudyUID": ["DBT-S00163"], "View": ["lcc"]}
    pd.DataFrame({**key, "descriptive_path": [rel], "classic_path": ["x/1-1.dcm"]}).to_csv(
        root / "BCS-DBT file-paths-train-v2.csv", index=False
    )
    pd.DataFrame({**key, "Normal": [0], "Actionable": [0], "Benign": [0], "Cancer": [1]}).to_csv(
        root / "BCS-DBT labels-train-v2.csv", index=False
    )
    pd.DataFrame(
        {
            **key,
            "Subject": ["DBT-P00013"],
            "Slice": [2],
            "X": [5],
            "Y": [6],
            "Width": [7],
            "Height": [8],
            "Class": ["cancer"],
            "AD": [0],
            "VolumeSlices": [4],
        }
    ).to_csv(root / "BCS-DBT boxes-train-v2.csv", index=False)
    m, les = _check("bcs-dbt", root, tmp_path)
    assert m.loc[0, ["laterality", "view", "modality", "n_slices", "breast_label", "annotation", "split"]].tolist() == [
        "L",
        "CC",
        "DBT",
        4,
        "cancer",
        "full",
        "train",
    ]
    assert les.loc[0, ["slice", "x", "y", "w", "h", "lesion_class"]].tolist() == [2, 5, 6, 7, 8, "malignant"]


def test_cbis_ddsm_with_tcia_folder_names(tmp_path: Path) -> None:
    root = tmp_path / "cbis"
    img_dir = (
        root
        / "CBIS-DDSM"
        / "Mass-Training_P_00001_LEFT_CC"
        / "07-20-2016-DDSM-74994"
        / "1.000000-full mammogram images-24515"
    )
    save(make_ds(breast(), ImageLaterality="L", ViewPosition="CC"), img_dir / "1-1.dcm")
    roi_dir = (
        root
        / "CBIS-DDSM"
        / "Mass-Training_P_00001_LEFT_CC_1"
        / "07-21-2016-DDSM-85931"
        / "1.000000-ROI mask images-57657"
    )
    mask = np.zeros((40, 32), np.uint8)
    mask[10:15, 4:12] = 255
    save(make_ds(mask, bits_stored=8), roi_dir / "1-2.dcm")
    save(make_ds(np.full((5, 8), 9, np.uint8), bits_stored=8), roi_dir / "1-1.dcm")  # the cropped image
    pd.DataFrame(
        {
            "patient_id": ["P_00001"],
            "breast_density": [3],
            "left or right breast": ["LEFT"],
            "image view": ["CC"],
            "abnormality id": [1],
            "abnormality type": ["mass"],
            "mass shape": ["IRREGULAR"],
            "mass margins": ["SPICULATED"],
            "assessment": [4],
            "pathology": ["MALIGNANT"],
            "subtlety": [4],
            "image file path": ["Mass-Training_P_00001_LEFT_CC/1.3.6.1/1.3.6.2/000000.dcm"],
            "cropped image file path": ["Mass-Training_P_00001_LEFT_CC_1/1.3.6.3/1.3.6.4/000000.dcm"],
            "ROI mask file path": ["Mass-Training_P_00001_LEFT_CC_1/1.3.6.3/1.3.6.5/000001.dcm\n"],
        }
    ).to_csv(root / "mass_case_description_train_set.csv", index=False)
    m, les = _check("cbis-ddsm", root, tmp_path)
    assert m.loc[0, ["image_id", "laterality", "view", "breast_label", "split"]].tolist() == [
        "Mass-Training_P_00001_LEFT_CC",
        "L",
        "CC",
        "cancer",
        "train",
    ]
    assert les.loc[0, ["x", "y", "w", "h", "lesion_class"]].tolist() == [4, 10, 8, 5, "malignant"]


def test_vindr_mammo(tmp_path: Path) -> None:
    root = tmp_path / "vindr"
    for iid, lat in (("img1", "L"), ("img2", "R")):
        save(make_ds(breast(), ImageLaterality=lat, ViewPosition="CC"), root / "images" / "st1" / f"{iid}.dicom")
    base = {
        "study_id": ["st1", "st1"],
        "series_id": ["se1", "se1"],
        "image_id": ["img1", "img2"],
        "laterality": ["L", "R"],
        "view_position": ["CC", "CC"],
        "height": [40, 40],
        "width": [32, 32],
        "breast_birads": ["BI-RADS 4", "BI-RADS 1"],
        "breast_density": ["DENSITY C", "DENSITY C"],
        "split": ["training", "training"],
    }
    pd.DataFrame(base).to_csv(root / "breast-level_annotations.csv", index=False)
    finding = {k: v[:1] for k, v in base.items()} | {
        "finding_categories": ["['Mass']"],
        "finding_birads": ["BI-RADS 4"],
        "xmin": [3.0],
        "ymin": [4.0],
        "xmax": [10.0],
        "ymax": [12.0],
    }
    pd.DataFrame(finding).to_csv(root / "finding_annotations.csv", index=False)
    m, les = _check("vindr-mammo", root, tmp_path)
    assert m.set_index("image_id")["breast_label"].to_dict() == {"img1": "cancer", "img2": "normal"}
    assert les.loc[0, ["x", "y", "w", "h", "lesion_class"]].tolist() == [3, 4, 7, 8, "malignant"]


def test_busi(tmp_path: Path) -> None:
    base = tmp_path / "busi" / "Dataset_BUSI_with_GT"
    for cls in ("benign", "malignant", "normal"):
        (base / cls).mkdir(parents=True)
        PILImage.fromarray(np.full((20, 30), 100, np.uint8)).save(base / cls / f"{cls} (1).png")
        mask = np.zeros((20, 30), np.uint8)
        if cls != "normal":
            mask[2:6, 3:9] = 255
        PILImage.fromarray(mask).save(base / cls / f"{cls} (1)_mask.png")
    m, les = _check("busi", tmp_path / "busi", tmp_path)
    assert sorted(m["breast_label"]) == ["benign", "cancer", "normal"] and set(m["modality"]) == {"US"}
    assert sorted(les["lesion_class"]) == ["benign", "malignant"]
    assert les.loc[0, ["x", "y", "w", "h"]].tolist() == [3, 2, 6, 4]


def test_inbreast(tmp_path: Path) -> None:
    root = tmp_path / "INbreast Release 1.0"
    save(
        make_ds(breast(), ImageLaterality="R", ViewPosition="MLO"),
        root / "AllDICOMs" / "20586908_6c613a14b80a8591_MG_R_ML_ANON.dcm",
    )
    (root / "AllXML").mkdir(parents=True)
    plist = {
        "Images": [
            {
                "ImageIndex": 0,
                "NumberOfROIs": 1,
                "ROIs": [
                    {"Name": "Mass", "NumberOfPoints": 3, "Point_px": ["(5.0, 6.0)", "(15.5, 9.0)", "(8.0, 20.0)"]}
                ],
            }
        ]
    }
    (root / "AllXML" / "20586908.xml").write_bytes(plistlib.dumps(plist, fmt=plistlib.FMT_XML))
    (root / "INbreast.csv").write_text(
        "Patient ID;Patient age;Laterality;View;Acquisition date;File Name;ACR;Bi-Rads\n"
        "removed;removed;R;MLO;201001;20586908;2;5\n"
    )
    m, les = _check("inbreast", root, tmp_path)
    assert m.loc[0, ["image_id", "patient_id", "laterality", "view", "breast_label"]].tolist() == [
        20586908,
        "6c613a14b80a8591",
        "R",
        "MLO",
        "cancer",
    ]
    assert les.loc[0, ["x", "y", "w", "h", "lesion_class"]].tolist() == [5.0, 6.0, 10.5, 14.0, "malignant"]


@pytest.mark.parametrize("fmt", ["bcs-dbt", "cbis-ddsm", "vindr-mammo", "busi", "inbreast", "folder"])
def test_wrong_layout_is_a_clear_error(tmp_path: Path, fmt: str) -> None:
    (tmp_path / "random.txt").write_text("x")
    with pytest.raises(DataError, match=str(tmp_path.name)):
        ingest(fmt, tmp_path)
