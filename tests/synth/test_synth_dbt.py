"""Synthetic DBT: reproducible, valid manifest, real DICOM, depth-localised lesions, distinct vendors."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pydicom
import pytest

from breastssl.commands.synth import run_synth
from breastssl.data.schema import load_dataset
from breastssl.data.synth.dbt import DBTSynthConfig, exam_plan, generate_exam

SMALL = ["height=48", "width=40"]


def _digest(root) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "dataset.json"
    }


@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("dbt") / "set"
    run_synth("dbt", out, n=6, seed=3, fmt="dicom", overrides=SMALL, workers=2, quiet=True)
    return out


def test_same_seed_identical_files(dicom_set, tmp_path):
    again = tmp_path / "again"
    run_synth("dbt", again, n=6, seed=3, fmt="dicom", overrides=SMALL, workers=1, quiet=True)
    assert _digest(dicom_set) == _digest(again)


def test_different_seed_differs(dicom_set, tmp_path):
    other = tmp_path / "other"
    run_synth("dbt", other, n=6, seed=4, fmt="dicom", overrides=SMALL, workers=1, quiet=True)
    assert _digest(dicom_set) != _digest(other)


def test_manifest_valid_and_four_views(dicom_set):
    manifest, lesions = load_dataset(dicom_set / "manifest.csv")
    assert set(manifest["modality"]) == {"DBT"}
    assert (manifest.groupby("exam_id").size() == 4).all()
    assert (manifest.groupby("exam_id")["vendor"].nunique() == 1).all()
    full = manifest["annotation"] == "full"
    assert (manifest.loc[full, "vendor"] == "Hologic").all() and (manifest.loc[~full, "vendor"] != "Hologic").all()
    assert lesions is not None and set(lesions["image_id"]) <= set(manifest["image_id"])
    cancer = manifest[manifest.breast_label == "cancer"]
    assert set(cancer["image_id"]) <= set(lesions.loc[lesions.lesion_class == "malignant", "image_id"])


def test_dicom_sop_class_and_tags(dicom_set):
    manifest = pd.read_csv(dicom_set / "manifest.csv")
    for _, row in manifest.iterrows():
        ds = pydicom.dcmread(dicom_set / row["path"])
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.13.1.3"  # Breast Tomosynthesis Image Storage
        assert ds.ImageLaterality == row["laterality"]
        assert ds.PatientID == row["patient_id"] and ds.PatientName == row["patient_id"]
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientBirthDate == ""
        assert int(ds.NumberOfFrames) == row["n_slices"] == len(ds.PerFrameFunctionalGroupsSequence)
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        assert float(spacing[0]) == pytest.approx(row["spacing"])
        assert ds.pixel_array.shape == (row["n_slices"], row["rows"], row["columns"])
        assert row["vendor"].upper() in ds.Manufacturer.upper()


def test_npy_matches_dicom_pixels(dicom_set, tmp_path):
    npy = tmp_path / "npy"
    run_synth("dbt", npy, n=6, seed=3, fmt="npy", overrides=SMALL, workers=1, quiet=True)
    manifest = pd.read_csv(dicom_set / "manifest.csv")
    row = manifest.iloc[0]
    a = pydicom.dcmread(dicom_set / row["path"]).pixel_array
    b = np.load(npy / row["path"].replace(".dcm", ".npy"))
    assert np.array_equal(a, b)


def test_lesion_sharper_on_key_slice_than_far():
    cfg = DBTSynthConfig(height=64, width=48)
    from breastssl.data.synth.dbt_dataset import lesion_cnr

    key_cnr, far_cnr = [], []
    for i in range(40):
        _, stacks = generate_exam(cfg, 11, i)
        for s in stacks:
            for les in s.lesions:
                d = s.stored.shape[0]
                far = les.key_slice + d // 3 if les.key_slice < d / 2 else les.key_slice - d // 3
                key_cnr.append(lesion_cnr(s.stored, les.mask, les.key_slice))
                far_cnr.append(lesion_cnr(s.stored, les.mask, far))
    assert len(key_cnr) >= 20
    assert np.mean(key_cnr) > 1.0 and np.mean(key_cnr) > 3 * max(np.mean(far_cnr), 0.1)


def test_vendors_differ():
    cfg = DBTSynthConfig(height=64, width=48)
    stats: dict[str, dict[str, list]] = {}
    for i in range(60):
        plan, stacks = generate_exam(cfg, 5, i)
        s = stacks[0]
        top = 2.0 ** {"Hologic": 10, "GE": 12, "Siemens": 12}[s.vendor] - 1
        body = s.stored[s.stored.shape[0] // 2] / top
        vals = body[body > 0.05]
        hf = np.abs(np.diff(s.stored[s.stored.shape[0] // 2].astype(float) / top, axis=1))[:, :-1][body[:, :-2] > 0.2]
        d = stats.setdefault(s.vendor, {"mean": [], "slices": [], "rows": [], "hf": []})
        d["mean"].append(vals.mean())
        d["slices"].append(s.stored.shape[0])
        d["rows"].append(s.stored.shape[1])
        d["hf"].append(hf.mean())
    assert set(stats) == {"Hologic", "GE", "Siemens"}
    means = {v: np.mean(d["mean"]) for v, d in stats.items()}
    hf = {v: np.mean(d["hf"]) for v, d in stats.items()}
    # tone curves differ: mean stored brightness of breast tissue
    assert max(means.values()) - min(means.values()) > 0.08
    # blur/noise differ: GE is the smoothest reconstruction, Siemens the grainiest
    assert hf["GE"] < hf["Hologic"] < hf["Siemens"]
    # slice count differs: GE's 0.5 mm reconstruction gives about twice the slices of the 1 mm vendors
    assert np.mean(stats["GE"]["slices"]) > 1.6 * np.mean(stats["Hologic"]["slices"])
    # pixel pitch differs: Siemens' 0.085 mm pitch gives a larger matrix
    assert np.mean(stats["Siemens"]["rows"]) > np.mean(stats["Hologic"]["rows"])


def test_class_proportions_and_plan_reproducible():
    cfg = DBTSynthConfig()
    plans = [exam_plan(cfg, 0, i) for i in range(2000)]
    assert plans[:5] == [exam_plan(cfg, 0, i) for i in range(5)]
    frac = pd.Series([p["exam_class"] for p in plans]).value_counts(normalize=True)
    for cls, target in cfg.exam_mix.items():
        assert abs(frac[cls] - target) < 0.04
    vendors = pd.Series([p["vendor"] for p in plans]).value_counts(normalize=True)
    assert abs(vendors["Hologic"] - 0.52) < 0.04


def test_lesion_depth_factor_widens_the_visible_extent():
    """lesion_depth_factor=4 keeps a lesion visible further from its key slice, and half_depth records it."""
    from breastssl.data.synth.dbt_dataset import lesion_cnr

    def near_cnr(factor: float) -> tuple[float, float]:
        cfg = DBTSynthConfig(height=64, width=48, lesion_depth_factor=factor)
        cnr, depth = [], []
        for i in range(30):
            for s in generate_exam(cfg, 11, i)[1]:
                for les in s.lesions:
                    z = les.key_slice + 3 if les.key_slice + 3 < s.stored.shape[0] else les.key_slice - 3
                    cnr.append(lesion_cnr(s.stored, les.mask, z))
                    depth.append(les.half_depth)
        return float(np.mean(cnr)), float(np.mean(depth))

    (thin_cnr, thin_depth), (deep_cnr, deep_depth) = near_cnr(1.0), near_cnr(4.0)
    assert 0.5 < thin_depth < 2.0 and deep_depth > 2.5 * thin_depth
    assert deep_cnr > 2 * max(thin_cnr, 0.1)  # 3 slices off the key slice: faded at 1, still visible at 4
