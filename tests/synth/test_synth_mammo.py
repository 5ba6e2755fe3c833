"""Synthetic mammography + reports: reproducibility, schema, DICOM tags, appearance, report statistics."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage

from breastssl.data.schema import load_dataset
from breastssl.data.synth.common import rng_for
from breastssl.data.synth.mammo import MammoSynthConfig, exam_plan, generate_exam
from breastssl.data.synth.mammo_dataset import display_pixels, mammo_modality
from breastssl.data.synth.reports import SIDE_NAME, LesionFinding, clock_position, make_report
from breastssl.data.synth.writer import generate_dataset

SMALL = {"height": 64, "width": 48}


def _generate(out: Path, n: int = 6, seed: int = 3, fmt: str = "dicom", **over) -> dict:
    cfg = MammoSynthConfig(**{**SMALL, **over})
    return generate_dataset(mammo_modality(cfg), out, n, seed, fmt, workers=1)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mg") / "ds"
    _generate(
        out,
        n=8,
        exam_mix={"cancer": 0.5, "benign": 0.3, "normal": 0.2},
        vendors=["Hologic", "GE"],
        vendor_weights=[0.5, 0.5],
    )
    return out


def test_same_seed_identical_files(dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    _generate(
        again,
        n=8,
        exam_mix={"cancer": 0.5, "benign": 0.3, "normal": 0.2},
        vendors=["Hologic", "GE"],
        vendor_weights=[0.5, 0.5],
    )
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file() and p.suffix != ".png")
    assert any(f.suffix == ".dcm" for f in files) and any(f.suffix == ".txt" for f in files)
    for f in files:
        assert filecmp.cmp(dataset / f, again / f, shallow=False), f


def test_manifest_and_lesions_validate(dataset: Path) -> None:
    manifest, lesions = load_dataset(dataset / "manifest.csv")
    assert set(manifest["modality"]) == {"MG"} and len(manifest) == 32
    assert set(manifest["annotation"]) <= {"full", "report"}
    assert (manifest.groupby("exam_id")["annotation"].nunique() == 1).all()
    assert lesions is not None and len(lesions) > 0
    for p in lesions["mask_path"]:
        assert (dataset / p).is_file()
    pos = manifest[manifest.breast_label != "normal"]
    assert set(pos["image_id"]) == set(lesions["image_id"])  # every lesion breast has masks in both views
    for p in manifest["report_path"].unique():
        assert (dataset / p).read_text(encoding="utf-8").startswith("DESCRIPTION:")


def test_dicom_tags(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv")
    for _, row in manifest.iterrows():
        ds = pydicom.dcmread(dataset / row["path"])
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
        assert ds.ImageLaterality == row["laterality"] and ds.ViewPosition == row["view"]
        assert float(ds.PixelSpacing[0]) == pytest.approx(row["spacing"])
        assert ds.PatientID == row["patient_id"] and str(ds.PatientName) == row["patient_id"]
        assert ds.PatientBirthDate == "" and ds.get("OtherPatientIDs") is None
        assert re.fullmatch(r"mg-p\d{6}", ds.PatientID)
        assert ds.PhotometricInterpretation == row["photometric"]
        assert ds.pixel_array.shape == (row["rows"], row["columns"])


def test_monochrome1_inverts_to_the_npy_image(tmp_path: Path) -> None:
    kw = {"vendors": ["GE"], "vendor_weights": [1.0]}
    _generate(tmp_path / "d", n=1, fmt="dicom", **kw)
    _generate(tmp_path / "n", n=1, fmt="npy", **kw)
    m = pd.read_csv(tmp_path / "d" / "manifest.csv")
    assert set(m["photometric"]) == {"MONOCHROME1"}
    for path in m["path"]:
        ds = pydicom.dcmread(tmp_path / "d" / path)
        display = np.load(tmp_path / "n" / path.replace(".dcm", ".npy"))
        top = 2 ** int(ds.BitsStored) - 1
        np.testing.assert_array_equal(top - ds.pixel_array.astype(np.int64), display)
        assert display.mean() < ds.pixel_array.mean()  # air is bright when stored, dark when displayed
        assert float(ds.WindowCenter) == pytest.approx(top - m.loc[m.path == path, "window_center"].iloc[0])


def test_lesions_brighter_than_surround(dataset: Path) -> None:
    manifest, lesions = load_dataset(dataset / "manifest.csv")
    from PIL import Image

    diffs = []
    for _, les in lesions.iterrows():
        row = manifest[manifest.image_id == les["image_id"]].iloc[0]
        img = display_pixels(dataset, row)
        mask = np.asarray(Image.open(dataset / les["mask_path"])) > 0
        ring = ndimage.binary_dilation(mask, iterations=3) & ~ndimage.binary_dilation(mask, iterations=1)
        diffs.append(img[mask].mean() - img[ring].mean())
    assert np.mean(np.array(diffs) > 0) >= 0.9


def _texture(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float64) - ndimage.gaussian_filter(img.astype(np.float64), 4)


def test_bilateral_pairs_more_similar_than_different_patients() -> None:
    cfg = MammoSynthConfig(**SMALL, vendors=["Hologic"], vendor_weights=[1.0], exam_mix={"normal": 1.0})
    exams = [generate_exam(cfg, 5, i)[1] for i in range(6)]

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        inside = (a > a.max() * 0.2) & (b > b.max() * 0.2)
        return float(np.corrcoef(_texture(a)[inside], _texture(b)[inside])[0, 1])

    same = [corr(v[0].pixels, v[2].pixels[:, ::-1]) for v in exams]  # L-CC vs mirrored R-CC
    other = [corr(exams[i][0].pixels, exams[i + 1][2].pixels[:, ::-1]) for i in range(5)]
    assert min(same) > max(other) and np.mean(same) > 0.5


def test_cc_and_mlo_show_the_same_lesion() -> None:
    cfg = MammoSynthConfig(**SMALL, exam_mix={"cancer": 1.0})
    plan, views, report = generate_exam(cfg, 1, 0)
    side = next(s for s, label in plan["labels"].items() if label == "cancer")
    cc, mlo = (v for v in views if v.laterality == side)
    assert len(cc.lesions) == len(mlo.lesions) == 1
    assert cc.lesions[0].finding == mlo.lesions[0].finding and cc.lesions[0].radius_px == mlo.lesions[0].radius_px


def _random_findings(rng: np.random.Generator) -> dict[str, list[LesionFinding]]:
    out: dict[str, list[LesionFinding]] = {"L": [], "R": []}
    for side in ("L", "R"):
        if rng.random() < 0.35:
            clock, quad = clock_position(side, rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.8))
            cls = "malignant" if rng.random() < 0.5 else "benign"
            out[side].append(LesionFinding(cls, clock, quad, "middle", float(rng.uniform(6, 25))))
    return out


@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_report_disagreement_rate(rate: float) -> None:
    n_sides = n_wrong = 0
    kinds: set[str] = set()
    for i in range(2000):
        rng = rng_for(11, i)
        rep = make_report(_random_findings(rng), rng, error_rate=rate)
        assert "DESCRIPTION:" in rep.text and "IMPRESSION:" in rep.text
        for s in rep.sides.values():
            n_sides += 1
            n_wrong += s.intended != s.true_label
            kinds.add(s.error)
            assert (s.error == "none") == (s.intended == s.true_label)
    assert abs(n_wrong / n_sides - rate) < 0.02
    if rate > 0:
        assert {"missed", "false_alarm", "wrong_side"} <= kinds


def test_report_laterality_and_birads() -> None:
    for i in range(300):
        rng = rng_for(12, i)
        findings = _random_findings(rng)
        rep = make_report(findings, rng, error_rate=0.0, uncertainty_rate=0.2)
        for side, s in rep.sides.items():
            assert s.true_label == ("positive" if findings[side] else "negative")
            if s.true_label == "positive":
                assert s.sentences and all(SIDE_NAME[side] in t.lower() for t in s.sentences)
                assert all(t in rep.text for t in s.sentences)
                want = {"positive": {2, 3, 4, 5}, "uncertain": {0}}[s.report_label]
                if findings[side][0].lesion_class == "malignant" and s.report_label == "positive":
                    want = {4, 5}
                assert s.birads in want
            else:
                assert s.birads in {1, 2} and s.report_label in {"negative", "uncertain"}
        assert f"BI-RADS {rep.birads}" in rep.impression


def test_dataset_report_columns_match_truth(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv")
    sides = manifest.drop_duplicates(["exam_id", "laterality"])
    assert ((sides["breast_label"] != "normal") == (sides["mass_label"] == "positive")).all()
    agree = sides["report_error"] == "none"
    assert (agree == (sides["report_intended"] == sides["mass_label"])).all()
    for _, row in sides[agree & (sides.mass_label == "positive")].iterrows():
        assert f"{SIDE_NAME[row['laterality']]} breast" in (dataset / row["report_path"]).read_text(encoding="utf-8")


def test_annotation_fraction() -> None:
    cfg = MammoSynthConfig(**SMALL, full_fraction=0.3)
    full = np.mean([exam_plan(cfg, 0, i)["annotation"] == "full" for i in range(400)])
    assert abs(full - 0.3) < 0.08
