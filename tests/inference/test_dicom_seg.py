"""`breastssl predict --run RUN ... --dicom-seg SEG_OUT`: one FRACTIONAL DICOM Segmentation per source image.

Read back with highdicom: a SEG frame per source frame (enhanced DBT: ReferencedFrameNumber 1…N; legacy series: each
slice's instance; mammogram: the image), on the source's Rows × Columns, whose fractional values are the model's
probability map mapped back to the source grid (within the 1/255 quantisation); the segment and the algorithm are
named; only the patient and study identification is copied. Runs without a segmentation head exit 2.
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
from breastssl.inference.findings import safe_name
from breastssl.inference.geometry import load_view, map_to_source
from breastssl.run.predict import predict_run

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"

# the shared fixtures (module-scoped: each test module trains its own tiny runs)
dbt_setup, mammo_setup, us_setup = cf.dbt_setup, cf.mammo_setup, cf.us_setup


def expected(out: Path, image_id: str) -> np.ndarray:
    """(S, rows, cols) × 255: the view's probability map on the source grid, as the SEG must hold it."""
    _, prob, g = load_view(out / "views" / f"{safe_name(image_id)}.npz")
    return map_to_source(prob.astype(np.float32) / 255, g) * 255


def check_seg(seg_path: Path, source: Path) -> hd.seg.Segmentation:
    """The segment, the algorithm and the identification; nothing else of the source."""
    seg = hd.seg.segread(seg_path)
    assert seg.SOPClassUID == SEGMENTATION_STORAGE and seg.SegmentationType == "FRACTIONAL"
    assert seg.SegmentationFractionalType == "PROBABILITY" and seg.MaximumFractionalValue == 255
    desc = seg.SegmentSequence[0]
    assert len(seg.SegmentSequence) == 1 and desc.SegmentLabel == "lesion probability"
    assert desc.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
    algorithm = desc.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("breastssl", breastssl.__version__)
    assert seg.Manufacturer == "breastssl" and seg.SoftwareVersions == breastssl.__version__
    src = pydicom.dcmread(source, stop_before_pixels=True)
    for kw, value in IDENTIFICATION.items():
        assert str(seg[kw].value) == value, kw
    assert seg.StudyInstanceUID == src.StudyInstanceUID and seg.FrameOfReferenceUID == src.FrameOfReferenceUID
    data = seg_path.read_bytes()
    for kw, value in NOT_COPIED.items():
        assert kw not in seg and value.encode() not in data, kw
    assert PRIVATE[3].encode() not in data and not any(e.tag.is_private for e in seg.iterall())
    return seg


@pytest.fixture(scope="module")
def dbt_seg(dbt_setup, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("dbt_seg")
    predict_run(dbt_setup["run"], [dbt_setup["study"]], base / "out", top_slices=1, model=square_dbt(dbt_setup["run"]),
                dicom_seg=base / "seg")  # fmt: skip
    return base


def test_dbt_seg_has_one_frame_per_source_frame_holding_the_mapped_probabilities(dbt_seg):
    out = dbt_seg / "out"
    sources = pd.read_csv(out / "sources.csv", dtype=str, keep_default_na=False)
    assert sorted(p.name for p in (dbt_seg / "seg").iterdir()) == sorted(f"{i}.dcm" for i in sources["image_id"])
    for row in sources.to_dict("records"):
        seg = check_seg(dbt_seg / "seg" / f"{row['image_id']}.dcm", Path(row["path"]))
        src = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert (seg.NumberOfFrames, seg.Rows, seg.Columns) == (src.NumberOfFrames, src.Rows, src.Columns)
        frames = [f.DerivationImageSequence[0].SourceImageSequence[0] for f in seg.PerFrameFunctionalGroupsSequence]
        assert {f.ReferencedSOPInstanceUID for f in frames} == {src.SOPInstanceUID}
        assert sorted(int(f.ReferencedFrameNumber) for f in frames) == list(range(1, src.NumberOfFrames + 1))
        pixels = seg.get_pixels_by_source_frame(src.SOPInstanceUID, list(range(1, src.NumberOfFrames + 1)),
                                                rescale_fractional=False)[..., 0].astype(np.float64)  # fmt: skip
        want = expected(out, row["image_id"])
        assert np.abs(pixels - want).max() <= 0.5 + 1e-3  # the SEG stores round(255 p)
        assert pixels.max() == 255 and (pixels[:, 60:, :] == 0).all()  # the square, at rows 25–40 of 80


def test_legacy_series_seg_frames_reference_the_slice_instances(dbt_setup, tmp_path):
    out, seg_dir = tmp_path / "out", tmp_path / "seg"
    predict_run(dbt_setup["run"], [dbt_setup["legacy"]], out, top_slices=1, model=square_dbt(dbt_setup["run"]),
                dicom_seg=seg_dir)  # fmt: skip
    row = pd.read_csv(out / "sources.csv", dtype=str, keep_default_na=False).iloc[0]
    slices = row["slice_sop_instance_uids"].split(";")
    seg = check_seg(seg_dir / f"{row['image_id']}.dcm", dbt_setup["legacy_files"][0])
    assert seg.NumberOfFrames == len(slices) == 6
    refs = [f.DerivationImageSequence[0].SourceImageSequence[0] for f in seg.PerFrameFunctionalGroupsSequence]
    assert sorted(r.ReferencedSOPInstanceUID for r in refs) == sorted(slices)
    assert not any("ReferencedFrameNumber" in r for r in refs)
    want = expected(out, row["image_id"])
    for z, uid in enumerate(slices):  # each slice's frame holds that slice's map
        got = seg.get_pixels_by_source_instance([uid], rescale_fractional=False)[0, ..., 0].astype(np.float64)
        assert np.abs(got - want[z]).max() <= 0.5 + 1e-3


def test_mammo_seg_is_on_the_source_grid_of_flipped_and_cropped_images(mammo_setup, tmp_path, monkeypatch):
    square_mammo(monkeypatch)
    out, seg_dir = tmp_path / "out", tmp_path / "seg"
    predict_run(mammo_setup["run"], [mammo_setup["study"]], out, dicom_seg=seg_dir)
    sources = pd.read_csv(out / "sources.csv", dtype=str, keep_default_na=False)
    for row in sources.to_dict("records"):
        seg = check_seg(seg_dir / f"{row['image_id']}.dcm", Path(row["path"]))
        src = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert (seg.NumberOfFrames, seg.Rows, seg.Columns) == (1, src.Rows, src.Columns)
        got = seg.get_pixels_by_source_instance([src.SOPInstanceUID], rescale_fractional=False)[0, ..., 0]
        assert np.abs(got.astype(np.float64) - expected(out, row["image_id"])[0]).max() <= 0.5 + 1e-3
        # the marked pixels, taken back through preprocessing, are the square the model marked
        _, geo = prepare(read_image(row["path"]), MAMMO_SIZE)
        ys, xs = np.nonzero(geo.mask(got >= 128))
        y0, y1, x0, x1 = MAMMO_SQUARE
        assert abs(ys.min() - y0) <= 1 and abs(ys.max() + 1 - y1) <= 1
        assert abs(xs.min() - x0) <= 1 and abs(xs.max() + 1 - x1) <= 1


def test_cli_seg_for_a_run_without_segmentation_head_exits_2(us_setup, tmp_path, capsys):
    out, seg = tmp_path / "out", tmp_path / "seg"
    args = [
        "predict",
        "--run",
        str(us_setup["run"]),
        str(us_setup["study"]),
        "--out",
        str(out),
        "--dicom-seg",
        str(seg),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--dicom-seg" in err and "no segmentation head" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_cli_seg_of_a_non_dicom_mammogram_exits_2_naming_it(mammo_setup, tmp_path, capsys):
    out, seg = tmp_path / "out", tmp_path / "seg"
    assert main(["predict", "--run", str(mammo_setup["run"]), str(mammo_setup["npy"]), "--out", str(out),
                 "--dicom-seg", str(seg)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert str(mammo_setup["npy"]) in err and "not a DICOM file" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_seg_beside_sr(mammo_setup, tmp_path, capsys, monkeypatch):
    square_mammo(monkeypatch)
    out, sr, seg = tmp_path / "out", tmp_path / "sr", tmp_path / "seg"
    assert main(["predict", "--run", str(mammo_setup["run"]), str(mammo_setup["study"]), "--out", str(out),
                 "--dicom-sr", str(sr), "--dicom-seg", str(seg)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "DICOM SR: 1 file(s)" in printed and "DICOM SEG: 2 file(s)" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "seg", "sr"]
