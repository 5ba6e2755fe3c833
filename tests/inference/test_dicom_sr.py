"""`breastssl predict --run RUN ... --dicom-sr SR_OUT`: one TID 1500 Measurement Report per study.

Read back with pydicom / highdicom: every region of regions.csv is a planar ROI whose SCOORD is its box in source
pixels on the right object and frame (enhanced DBT: frame = slice + 1; legacy series: the slice's own instance;
2-D images: no frame), and whose centre the model called lesion; the scores of images, breasts and the study are
there; the algorithm is named; the patient and study identification is copied and nothing else is. Bad requests
exit with status 2, name the file, and leave no output folder.
"""

from __future__ import annotations

from pathlib import Path

import clinical_fixtures as cf
import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
from clinical_fixtures import (
    IDENTIFICATION,
    MAMMO_SIZE,
    MAMMO_SQUARE,
    NOT_COPIED,
    PRIVATE,
    square_dbt,
    square_mammo,
)

import breastssl
from breastssl.cli import main
from breastssl.data.dicom import read_image
from breastssl.data.preprocess import prepare
from breastssl.inference.dicom_refs import source_headers
from breastssl.inference.dicom_sr import build_report
from breastssl.inference.findings import safe_name
from breastssl.inference.geometry import load_view, map_to_source
from breastssl.run.predict import predict_run

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"

# the shared fixtures (module-scoped: each test module trains its own tiny runs)
comoto_setup, dbt_setup, mammo_setup, us_setup = cf.comoto_setup, cf.dbt_setup, cf.mammo_setup, cf.us_setup


# ---- reading an SR back ------------------------------------------------------------------------------


def items(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of an SR content tree, depth first."""
    out = []
    for item in ds.get("ContentSequence", []):
        out.append(item)
        out += items(item)
    return out


def named(ds: pydicom.Dataset, meaning: str) -> list[pydicom.Dataset]:
    return [
        i for i in items(ds) if "ConceptNameCodeSequence" in i and i.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def texts(ds: pydicom.Dataset, meaning: str) -> list[str]:
    return [str(i.get("TextValue", i.get("UID", ""))) for i in named(ds, meaning)]


def check_identification_only(sr: pydicom.Dataset, source: Path) -> None:
    """The source's patient / study identification is copied; nothing else of the source is."""
    src = pydicom.dcmread(source, stop_before_pixels=True)
    for kw, value in IDENTIFICATION.items():
        assert str(sr[kw].value) == value, kw
    assert sr.StudyInstanceUID == src.StudyInstanceUID
    raw = sr.filename if isinstance(sr.filename, str) else None
    data = Path(raw).read_bytes() if raw else b""
    for kw, value in NOT_COPIED.items():
        assert kw not in sr and value.encode() not in data, kw
    assert PRIVATE[3].encode() not in data and not any(e.tag.is_private for e in sr.iterall())
    assert "PatientIdentityRemoved" not in sr and sr.Manufacturer == "breastssl"


def rois(sr: pydicom.Dataset) -> dict[str, dict]:
    """Tracking identifier → {polyline (K, 2), reference (SOP UID, frame or None), score} of each planar ROI."""
    doc = hd.sr.Comprehensive3DSR.from_dataset(sr)
    out = {}
    for group in doc.content.get_planar_roi_measurement_groups():
        ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
        frame = int(ref.ReferencedFrameNumber) if "ReferencedFrameNumber" in ref else None
        out[group.tracking_identifier] = {"polyline": np.asarray(group.roi.value, float),
                                          "ref": (str(ref.ReferencedSOPInstanceUID), frame),
                                          "score": float(group.get_measurements()[0].value)}  # fmt: skip
    return out


def level_scores(sr: pydicom.Dataset) -> dict[str, float]:
    """Tracking identifier → score of the study / breast / image measurement groups."""
    doc = hd.sr.Comprehensive3DSR.from_dataset(sr)
    return {
        g.tracking_identifier: float(g.get_measurements()[0].value) for g in doc.content.get_image_measurement_groups()
    }


def region_key(row: dict) -> str:
    return f"{row['image_id']} region {int(row['region'])} slice {int(row['slice'])}"


def box_of(polyline: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = polyline.min(axis=0), polyline.max(axis=0)
    assert len(polyline) == 5 and np.allclose(polyline[0], polyline[-1])  # a closed rectangle
    return np.array([x0, y0, x1 - x0, y1 - y0])


def outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    regions = pd.read_csv(out / "regions.csv", dtype={"image_id": str})
    sources = pd.read_csv(out / "sources.csv", dtype=str, keep_default_na=False).set_index("image_id", drop=False)
    return regions, sources


# ---- DBT ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dbt_sr(dbt_setup, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("dbt_sr")
    predict_run(dbt_setup["run"], [dbt_setup["study"]], base / "out", top_slices=2, model=square_dbt(dbt_setup["run"]),
                dicom_sr=base / "sr")  # fmt: skip
    return base


def test_dbt_sr_references_frames_and_carries_every_region_and_score(dbt_sr):
    regions, sources = outputs(dbt_sr / "out")
    files = list((dbt_sr / "sr").iterdir())
    assert [f.name for f in files] == [f"{safe_name(sources['exam_id'].iloc[0])}.dcm"]  # one study, one SR
    sr = pydicom.dcmread(files[0])
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR and sr.Modality == "SR" and sr.VerificationFlag == "UNVERIFIED"
    check_identification_only(sr, Path(sources["path"].iloc[0]))
    found = rois(sr)
    assert len(found) == len(regions) == 8  # 4 stacks × 2 top slices
    for row in regions.to_dict("records"):
        roi = found[region_key(row)]
        source = sources.loc[row["image_id"]]
        assert roi["ref"] == (source["sop_instance_uid"], int(row["slice"]) + 1)  # 1-based frame of the slice
        box = box_of(roi["polyline"])
        np.testing.assert_allclose(box, [row["x"], row["y"], row["w"], row["h"]], rtol=1e-6)
        assert roi["score"] == pytest.approx(row["score"])
        # the SCOORD's centre, on the source frame's probability map, is lesion
        _, prob, g = load_view(dbt_sr / "out" / "views" / f"{safe_name(row['image_id'])}.npz")
        frame = map_to_source(prob[int(row["slice"])].astype(np.float32) / 255, g)
        assert frame[int(box[1] + box[3] / 2), int(box[0] + box[2] / 2)] >= 0.5
    evidence = [i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence]  # fmt: skip
    assert sorted(evidence) == sorted(sources["sop_instance_uid"])


def test_dbt_sr_scores_of_study_breasts_and_stacks_and_the_algorithm(dbt_sr, dbt_setup):
    out = dbt_sr / "out"
    sr = pydicom.dcmread(next((dbt_sr / "sr").iterdir()))
    scores = level_scores(sr)
    stacks = pd.read_csv(out / "stacks.csv", dtype={"image_id": str})
    breasts = pd.read_csv(out / "breasts.csv")
    assert scores["study"] == pytest.approx(pd.read_csv(out / "exams.csv")["score"].iloc[0])
    for lat, score in breasts[["laterality", "score"]].itertuples(index=False):
        assert scores[f"breast {lat}"] == pytest.approx(score)
    for image_id, score in stacks[["image_id", "score"]].itertuples(index=False):
        assert scores[f"image {image_id}"] == pytest.approx(score)
    run_name = dbt_setup["run"].name
    assert texts(sr, "Device Observer Name") == ["breastssl"]
    assert texts(sr, "Device Observer Model Name") == [f"dbt run {run_name}"]
    assert set(texts(sr, "Algorithm Name")) == {"breastssl"}
    assert set(texts(sr, "Algorithm Version")) == {breastssl.__version__}
    assert f"run {run_name}" in texts(sr, "Algorithm Parameters")
    units = {
        i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue for i in named(sr, "Probability of cancer")
    }
    assert units == {"{probability}"}


def test_legacy_series_sr_references_each_slice_instance(dbt_setup, tmp_path):
    out, sr_dir = tmp_path / "out", tmp_path / "sr"
    predict_run(dbt_setup["run"], [dbt_setup["legacy"]], out, top_slices=2, model=square_dbt(dbt_setup["run"]),
                dicom_sr=sr_dir)  # fmt: skip
    regions, sources = outputs(out)
    slices = sources["slice_sop_instance_uids"].iloc[0].split(";")
    sr = pydicom.dcmread(next(sr_dir.iterdir()))
    check_identification_only(sr, dbt_setup["legacy_files"][0])
    found = rois(sr)
    assert len(found) == len(regions) == 2
    for row in regions.to_dict("records"):
        assert found[region_key(row)]["ref"] == (slices[int(row["slice"])], None)  # the slice's own instance


# ---- mammography, ultrasound, CoMoTo -------------------------------------------------------------------


def test_mammo_sr_boxes_are_source_pixels_of_flipped_and_cropped_images(mammo_setup, tmp_path, monkeypatch):
    square_mammo(monkeypatch)
    out, sr_dir = tmp_path / "out", tmp_path / "sr"
    predict_run(mammo_setup["run"], [mammo_setup["study"]], out, dicom_sr=sr_dir)
    regions, sources = outputs(out)
    sr = pydicom.dcmread(next(sr_dir.iterdir()))
    check_identification_only(sr, Path(sources["path"].iloc[0]))
    found, scores = rois(sr), level_scores(sr)
    assert len(found) == len(regions) == 2 and {"study", "breast L", "breast R"} <= set(scores)
    for row in regions.to_dict("records"):
        source = sources.loc[row["image_id"]]
        roi = found[region_key(row)]
        assert roi["ref"] == (source["sop_instance_uid"], None)  # a 2-D image: no frame number
        box = box_of(roi["polyline"])
        # back through preprocessing, the SR's box is the square the model marked
        _, geo = prepare(read_image(source["path"]), MAMMO_SIZE)
        y0, y1, x0, x1 = MAMMO_SQUARE
        np.testing.assert_allclose(geo.boxes(box[None])[0], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
        assert scores[f"image {row['image_id']}"] == pytest.approx(float(source["score"]))
    sites = {str(i.ConceptCodeSequence[0].CodeMeaning) for i in named(sr, "Laterality")}
    assert sites == {"Left", "Right"}


def test_us_sr_references_the_image_with_the_malignancy_probability(us_setup, tmp_path):
    out, sr_dir = tmp_path / "out", tmp_path / "sr"
    predict_run(us_setup["run"], [us_setup["study"]], out, dicom_sr=sr_dir)
    regions, sources = outputs(out)
    sr = pydicom.dcmread(next(sr_dir.iterdir()))
    check_identification_only(sr, Path(sources["path"].iloc[0]))
    found = rois(sr)
    pred = pd.read_csv(out / "predictions.csv")
    assert len(found) == len(regions) == len(pred) >= 1
    for row in regions.to_dict("records"):
        roi = found[region_key(row)]
        assert roi["ref"] == (sources["sop_instance_uid"].iloc[0], None)
        np.testing.assert_allclose(box_of(roi["polyline"]), [row["x"], row["y"], row["w"], row["h"]], rtol=1e-6)
        assert roi["score"] == pytest.approx(row["score"])
    procedures = [str(i.ConceptCodeSequence[0].CodeMeaning) for i in named(sr, "Procedure reported")]
    assert procedures == ["Ultrasonography of breast"]
    # a detector that found nothing: no score, no ROI, and every level says so
    empty = sources.assign(score="")
    headers = {r["image_id"]: source_headers(r) for r in empty.to_dict("records")}
    doc = hd.sr.Comprehensive3DSR.from_dataset(build_report(empty, headers, regions.iloc[:0], out, "us-mt", "us"))
    groups = doc.content.get_image_measurement_groups()
    assert [g.tracking_identifier for g in groups][0] == "study" and not doc.content.get_planar_roi_measurement_groups()
    for g in groups:
        assert not g.get_measurements() and g.get_qualitative_evaluations()[0].value.meaning == "Absent"


def test_comoto_sr_puts_each_volume_box_on_its_middle_frame(comoto_setup, dbt_setup, tmp_path):
    out, sr_dir = tmp_path / "out", tmp_path / "sr"
    predict_run(comoto_setup["run"], [dbt_setup["study"] / "dbt" / "dbt-e000000-LCC.dcm"], out, dicom_sr=sr_dir)
    regions, sources = outputs(out)
    found = rois(pydicom.dcmread(next(sr_dir.iterdir())))
    assert len(found) == len(regions) >= 1
    for row in regions.to_dict("records"):
        key = region_key(row) + (f" (slices {row['slice_first']}-{row['slice_last']})" if row["slice_first"] !=
                                 row["slice_last"] else "")  # fmt: skip
        assert found[key]["ref"] == (sources["sop_instance_uid"].iloc[0], int(row["slice"]) + 1)


# ---- the command line: errors leave nothing ------------------------------------------------------------


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def test_cli_writes_sr_and_refuses_to_overwrite(dbt_setup, tmp_path, capsys):
    args = ["predict", "--run", str(dbt_setup["run"]), str(dbt_setup["study"]), "--out", str(tmp_path / "out"),
            "--dicom-sr", str(tmp_path / "sr")]  # fmt: skip
    assert main(args) == 0
    assert "DICOM SR: 1 file(s)" in capsys.readouterr().out
    before = (tmp_path / "sr").stat().st_mtime_ns, list((tmp_path / "sr").iterdir())
    assert main([*args[:6], "--out", str(tmp_path / "out2"), "--dicom-sr", str(tmp_path / "sr")]) == 2
    assert "already exists" in capsys.readouterr().err and not (tmp_path / "out2").exists()
    assert ((tmp_path / "sr").stat().st_mtime_ns, list((tmp_path / "sr").iterdir())) == before
    assert main([*args, "--overwrite"]) == 0 and len(list((tmp_path / "sr").iterdir())) == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("family", ["mammo", "us", "comoto"])
def test_cli_non_dicom_input_exits_2_naming_the_file(family, mammo_setup, us_setup, comoto_setup, tmp_path, capsys):
    if family == "comoto":  # a manifest naming .npy stacks
        manifest = pd.read_csv(comoto_setup["dbt"] / "manifest.csv").iloc[:1]
        bad = comoto_setup["dbt"] / manifest["path"].iloc[0]
        inputs = tmp_path / "m.csv"
        manifest.assign(path=[str(bad)]).to_csv(inputs, index=False)
        run = comoto_setup["run"]
    else:
        setup = mammo_setup if family == "mammo" else us_setup
        run, bad = setup["run"], setup["npy"]
        inputs = bad
    out, sr = tmp_path / "out", tmp_path / "sr"
    assert main(["predict", "--run", str(run), str(inputs), "--out", str(out), "--dicom-sr", str(sr)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not a DICOM file" in err and "Traceback" not in err
    assert not out.exists() and not sr.exists() and leftovers(tmp_path) == []


def test_a_failing_export_leaves_no_output_at_all(dbt_setup, tmp_path, capsys, monkeypatch):
    """Everything is written atomically together: an SR that cannot be written takes OUT with it."""
    import breastssl.inference.dicom_sr as dicom_sr
    from breastssl.errors import DataError

    def fail(out: Path, *_: object) -> None:
        assert (out / "sources.csv").is_file()  # called once OUT's files are complete
        raise DataError(f"{out}: cannot write the SR (test)")

    monkeypatch.setattr(dicom_sr, "write_reports", fail)
    out, sr, seg = tmp_path / "out", tmp_path / "sr", tmp_path / "seg"
    args = ["predict", "--run", str(dbt_setup["run"]), str(dbt_setup["study"]), "--out", str(out)]
    assert main([*args, "--dicom-sr", str(sr), "--dicom-seg", str(seg)]) == 2
    assert "cannot write the SR" in capsys.readouterr().err
    assert not out.exists() and not sr.exists() and not seg.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["with --model", "inside --out", "same folder"])
def test_cli_refuses_bad_export_folders(case, dbt_setup, tmp_path, capsys):
    out = tmp_path / "out"
    if case == "with --model":
        args = ["--model", str(tmp_path / "m.pt"), "--modality", "mg", "--dicom-sr", str(tmp_path / "sr")]
        message = "use them with --run"
    elif case == "inside --out":
        args = ["--run", str(dbt_setup["run"]), "--dicom-sr", str(out / "sr")]
        message = "overlap"
    else:
        args = ["--run", str(dbt_setup["run"]), "--dicom-sr", str(tmp_path / "x"), "--dicom-seg", str(tmp_path / "x")]
        message = "overlap"
    assert main(["predict", *args, str(dbt_setup["study"]), "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
