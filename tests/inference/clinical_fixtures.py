"""Tiny runs and DICOM studies for the tests of issue 19's outputs (views / regions / sources, DICOM SR and SEG).

Runs are trained in about a second each, as in ``tests/run`` (the same tiny settings). The studies are DICOM objects
carrying patient and study identification plus attributes the exports must NOT copy (an institution, a study
description, the patient's age, a private tag), so the tests can check that only the identification travels.
Models are wrapped where a test needs known regions: the wrapped segmentation head gives a square of p ≈ 1 at a
fixed place of the model frame, so every mapping back to the source can be checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from typer.testing import CliRunner

from breastssl.cli import app

ROOT = Path(__file__).resolve().parents[2]
DBT_SIZE, MAMMO_SIZE = (32, 24), (48, 32)
DBT_SQUARE = (10, 16, 6, 12)  # rows y0:y1, columns x0:x1 of the model frame where the wrapped head says p ≈ 1
MAMMO_SQUARE = (20, 28, 8, 14)
SOP_MG = "1.2.840.10008.5.1.4.1.1.1.2"
IDENTIFICATION = {"PatientID": "SECRET-ID-123", "PatientName": "Doe^Jane", "PatientBirthDate": "19600101",
                  "PatientSex": "F", "AccessionNumber": "ACC999", "StudyID": "STUDY7", "StudyDate": "20240102",
                  "StudyTime": "101500", "ReferringPhysicianName": "Ref^Doc"}  # fmt: skip
NOT_COPIED = {"InstitutionName": "Secret Hospital", "StudyDescription": "secret study description",
              "PatientAge": "064Y", "OperatorsName": "Op^Erator", "StationName": "SECRET-STATION"}  # fmt: skip
PRIVATE = (0x0009, "SECRETCO", 0x01, "private secret value")
runner = CliRunner()


# ---- DICOM studies -----------------------------------------------------------------------------------


def identify(ds: Dataset, study_uid: str | None = None) -> Dataset:
    """Give ``ds`` the test identification, the attributes that must not be copied and a private tag."""
    for kw, value in {**IDENTIFICATION, **NOT_COPIED}.items():
        setattr(ds, kw, value)
    group, creator, element, value = PRIVATE
    ds.private_block(group, creator, create=True).add_new(element, "LO", value)
    if study_uid is not None:
        ds.StudyInstanceUID = study_uid
    return ds


def identified_copy(files: list[Path], dest: Path, study_uid: str) -> list[Path]:
    """Copies of DICOM ``files`` in ``dest`` (one study), identified by :func:`identify`."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        ds = identify(pydicom.dcmread(f), study_uid)
        ds.save_as(dest / f.name, enforce_file_format=True)
        out.append(dest / f.name)
    return out


def mg_dataset(study_uid: str, series_uid: str, frame_of_ref: str) -> Dataset:
    """An empty Digital Mammography object (file meta, SOP class and a new instance UID) in the given study, series
    and frame of reference; the caller adds the attributes and pixels."""
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID, fm.MediaStorageSOPInstanceUID = SOP_MG, generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = SOP_MG, fm.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_of_ref
    return ds


def legacy_series(enhanced: Path, dest: Path, n: int = 6) -> list[Path]:
    """The first ``n`` frames of an enhanced DBT file as a legacy one-file-per-slice series (Digital Mammography
    objects with positions, orientation, spacing and TOMO in ImageType), file names in reverse slice order."""
    src = pydicom.dcmread(enhanced)
    pixels = src.pixel_array[:n]
    shared = src.SharedFunctionalGroupsSequence[0]
    series, frame_of_ref = generate_uid(), generate_uid()
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for z in range(n):
        ds = mg_dataset(src.StudyInstanceUID, series, frame_of_ref)
        ds.Modality, ds.ImageType, ds.InstanceNumber = "MG", ["DERIVED", "PRIMARY", "TOMO"], z + 1
        ds.ImageLaterality, ds.ViewPosition = src.ImageLaterality, "CC"
        ds.PixelSpacing = shared.PixelMeasuresSequence[0].PixelSpacing
        ds.SliceThickness = shared.PixelMeasuresSequence[0].SliceThickness
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, float(z)], [1, 0, 0, 0, 1, 0]
        voi = src.PerFrameFunctionalGroupsSequence[z].FrameVOILUTSequence[0]
        ds.WindowCenter, ds.WindowWidth = voi.WindowCenter, voi.WindowWidth
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = pixels.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, src.BitsStored, src.HighBit, 0
        ds.PixelData = np.ascontiguousarray(pixels[z], dtype=np.uint16).tobytes()
        identify(ds)
        path = dest / f"IM{n - z:04d}.dcm"  # reverse order: the slice order must come from the positions
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def mammogram(path: Path, side: str, study_uid: str, rows: int = 96, cols: int = 72) -> Path:
    """A 2-D mammogram (MONOCHROME2) with the breast against the chest wall on ``side`` ("L": left edge) and black
    background elsewhere, so preprocessing flips a right breast and crops the background."""
    yy, xx = np.mgrid[:rows, :cols]
    cx = 0 if side == "L" else cols - 1
    inside = ((xx - cx) / (0.6 * cols)) ** 2 + ((yy - rows / 2) / (0.4 * rows)) ** 2 <= 1
    img = np.where(inside, 2500 + 800 * np.cos(yy / 4.0) ** 2, 0).astype(np.uint16)
    ds = mg_dataset(study_uid, generate_uid(), generate_uid())
    ds.Modality, ds.ImageType, ds.PresentationIntentType = "MG", ["ORIGINAL", "PRIMARY"], "FOR PRESENTATION"
    ds.ImageLaterality, ds.ViewPosition, ds.PatientOrientation = side, "CC", ["A" if side == "L" else "P", "R"]
    ds.PixelSpacing = ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.WindowCenter, ds.WindowWidth = 2000, 4000
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = img.tobytes()
    identify(ds)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


# ---- square-map model wrappers -----------------------------------------------------------------------


def square_logits(like: torch.Tensor, square: tuple[int, int, int, int]) -> torch.Tensor:
    """Logits of ``like``'s shape (B, 1, H, W): +30 inside ``square`` (rows y0:y1, columns x0:x1), −30 elsewhere."""
    y0, y1, x0, x1 = square
    out = torch.full_like(like, -30.0)
    out[..., y0:y1, x0:x1] = 30.0
    return out


class SquareHead(torch.nn.Module):
    """A trained model whose segmentation output is replaced by :func:`square_logits` (scores stay the model's)."""

    def __init__(self, model: torch.nn.Module, square: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.model, self.square = model, square

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        out = dict(self.model(x, *args, **kwargs))
        out["mask_logits"] = square_logits(out["mask_logits"], self.square)
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)["logits"]


def square_mammo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``load_family_run`` hand mammography predictors the run's model behind a :class:`SquareHead`."""
    import breastssl.run.folder as folder

    real = folder.load_family_run

    def patched(run: Path, family: str, device: str = "cpu"):  # noqa: ANN202
        loaded = real(run, family, device)
        if family == "mammo":
            loaded.models["model"] = SquareHead(loaded.models["model"], MAMMO_SQUARE)
        return loaded

    monkeypatch.setattr(folder, "load_family_run", patched)


# ---- tiny runs ---------------------------------------------------------------------------------------


def _train(config: str, sets: list[str]) -> None:
    result = runner.invoke(
        app, ["train", "-c", str(ROOT / "configs" / config), *[a for s in sets for a in ("--set", s)]]
    )
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"


@pytest.fixture(scope="module")
def dbt_setup(tmp_path_factory) -> dict[str, Path]:
    """A 2-step DBT run trained on 4 synthetic DICOM exams; its first exam identified as one study (4 enhanced
    Breast Tomosynthesis objects), and a legacy one-file-per-slice series of the same study in its own folder."""
    from breastssl.commands.synth import run_synth
    from breastssl.config import load_config
    from breastssl.run.recipes.dbt import RunConfig
    from breastssl.run.train import run_train

    base = tmp_path_factory.mktemp("dbt19")
    run_synth("dbt", base / "data", n=4, seed=0, fmt="dicom", quiet=True, workers=1)
    run = base / "runs" / "dbt-teacher"
    sets = [f"data.manifest={base / 'data' / 'manifest.csv'}", f"data.image_size=[{DBT_SIZE[0]},{DBT_SIZE[1]}]",
            "train.steps=2", "train.batch_size=8", "train.ckpt_every=2", "train.progress=false",
            "train.tensorboard=false", f"train.out_dir={run}", "model.decoder_width=8",
            "data.test_split=train"]  # fmt: skip
    run_train(load_config(RunConfig, ROOT / "configs" / "dbt_selectivekd_demo.yaml", sets))
    files = sorted((base / "data" / "images" / "dbt-e000000").glob("*.dcm"))
    study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    enhanced = identified_copy(files, base / "study" / "dbt", study)
    legacy = legacy_series(enhanced[0], base / "legacy_study" / "series")
    return {"run": run, "study": base / "study", "legacy": base / "legacy_study", "legacy_files": legacy}


def square_dbt(run: Path) -> SquareHead:
    from breastssl.run.recipes.dbt import load_teacher

    return SquareHead(load_teacher(run).eval(), DBT_SQUARE)


@pytest.fixture(scope="module")
def mammo_setup(tmp_path_factory) -> dict[str, Path]:
    """A 6-step mammography self-training run (synthetic .npy exams) and a DICOM study of a left and a right
    mammogram (the right one is flipped by preprocessing; both are cropped)."""
    from breastssl.commands.synth import run_synth

    base = tmp_path_factory.mktemp("mammo19")
    data = base / "data"
    run_synth("mammo", data, n=8, seed=0, fmt="npy", quiet=True)
    manifest = pd.read_csv(data / "manifest.csv", dtype=str)
    sides = manifest.groupby(["exam_id", "laterality"])["mass_label"].agg(lambda s: (s == "positive").any())
    labels = sides.rename("positive").reset_index()
    labels["soft_label"] = np.where(labels["positive"], 0.97, 0.03)
    labels[["exam_id", "laterality", "soft_label"]].to_csv(data / "labels.csv", index=False)
    run = base / "runs" / "mammo-st"
    _train("mammo_self_training_run_demo.yaml", [
        f"data.manifest={data / 'manifest.csv'}", f"data.labels={data / 'labels.csv'}", f"train.out_dir={run}",
        f"data.image_size=[{MAMMO_SIZE[0]},{MAMMO_SIZE[1]}]", "data.steps_per_epoch=2", "strategy.stage1_epochs=1",
        "strategy.rounds=1", "strategy.round_epochs=2", "strategy.p0_every=1", "strategy.crf.backend=numpy",
        "strategy.crf.workers=1", "train.batch_size=6", "train.ckpt_every=2", "train.log_every=1",
        "train.progress=false", "train.steps=3"])  # fmt: skip
    study = generate_uid()
    for side in ("L", "R"):
        mammogram(base / "study" / f"mg-{side}.dcm", side, study)
    npy = sorted((data / "images").rglob("*.npy"))[0]
    return {"run": run, "study": base / "study", "npy": npy}


@pytest.fixture(scope="module")
def us_setup(tmp_path_factory) -> dict[str, Path]:
    """A 4-step ultrasound run (detector + recognition; synthetic .npy images) and one identified US DICOM image."""
    from breastssl.commands.synth import run_synth

    base = tmp_path_factory.mktemp("us19")
    run_synth("us", base / "data", n=40, seed=0, fmt="npy", quiet=True, workers=1)
    run = base / "runs" / "us-mt"
    _train("us_mean_teacher_run_demo.yaml", [
        f"data.manifest={base / 'data' / 'manifest.csv'}", f"train.out_dir={run}", "data.basic_fraction=null",
        "detector.steps=3", "detector.freeze_steps=1", "detector.batch_size=2", "detector.min_size=64",
        "detector.max_size=96", "recognition.eval_every=2", "recognition.crop_size=16", "recognition.min_score=0",
        "model.width=4", "train.steps=4", "train.batch_size=4", "train.log_every=1",
        "train.progress=false"])  # fmt: skip
    run_synth("us", base / "dicom", n=1, seed=1, fmt="dicom", quiet=True, workers=1)
    files = sorted((base / "dicom" / "images").rglob("*.dcm"))
    identified_copy(files, base / "study", pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    return {"run": run, "study": base / "study", "npy": sorted((base / "data" / "images").rglob("*.npy"))[0]}


@pytest.fixture(scope="module")
def comoto_setup(tmp_path_factory) -> dict[str, Path]:
    """A 3-step CoMoTo mammography teacher (a lesion detector) at 48×40, and the synthetic DBT .npy manifest it
    was trained beside (a teacher is applied to DBT volumes slice by slice, as a student is)."""
    from breastssl.commands.synth import run_synth

    base = tmp_path_factory.mktemp("comoto19")
    run_synth("dbt", base / "dbt", n=4, seed=0, fmt="npy", quiet=True)
    run_synth("mammo", base / "mammo", n=6, seed=0, fmt="npy", quiet=True)
    run = base / "runs" / "comoto-teacher"
    _train("comoto_run_teacher_demo.yaml", [
        f"data.dbt.manifest={base / 'dbt' / 'manifest.csv'}", f"data.mammo.manifest={base / 'mammo' / 'manifest.csv'}",
        "data.mammo.test_split=val", f"train.out_dir={run}", "data.image_size=[48,40]", "train.steps=3",
        "train.batch_size=4", "train.log_every=1", "train.progress=false",
        "train.schedule.warmup_steps=0"])  # fmt: skip
    return {"run": run, "dbt": base / "dbt"}
