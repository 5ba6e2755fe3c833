"""Ingest of real and damaged archives (issue 17): ultrasound without laterality, checks as strict as the reader
(without a pixel decode), malformed headers as named errors (also through predict's folder scan), keyed
pseudonyms, --relative-paths, and failed runs that leave nothing behind.
"""

from __future__ import annotations

import hashlib
import shutil
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SOP_US, breast, enhanced_dbt, make_ds, save
from pydicom.data import get_testdata_file
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from breastssl.cli import main
from breastssl.data.dicom import read_image
from breastssl.data.schema import load_dataset
from breastssl.errors import DataError
from breastssl.inference.dbt_predict import collect_stacks

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values we damage

US_FILES = ["examples_rgb_color.dcm", "examples_palette.dcm", "examples_jpeg2k.dcm", "examples_ybr_color.dcm"]
JPEG_2000 = "1.2.840.10008.1.2.4.90"


class MissingPlugin:
    """What pydicom's decoder registry gives for a transfer syntax whose plugin is not installed."""

    is_available = False


def without_jpeg2000_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels

    real = pydicom.pixels.get_decoder
    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda ts: MissingPlugin() if ts == JPEG_2000 else real(ts))


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"pydicom's test file {name} is not installed"
    return Path(path)


def raw(ds: Dataset, keyword: str, vr: str, value: bytes) -> Dataset:
    """Store ``value`` as written in a file, bypassing pydicom's validation (how damaged files arrive)."""
    tag = Tag(keyword)
    value = value + b" " if len(value) % 2 else value
    ds._dict[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)
    return ds


def mammo(lat: str = "L", **attrs: object) -> Dataset:
    """A 64×48 CC mammogram (6 kB of pixels: long enough to truncate at 3,000 bytes)."""
    return make_ds(breast(64, 48), ImageLaterality=lat, ViewPosition="CC", WindowCenter=2000, WindowWidth=4000, **attrs)


def us_region(ds: Dataset, **values: int) -> Dataset:
    item = Dataset()
    for k, v in values.items():
        setattr(item, k, v)
    ds.SequenceOfUltrasoundRegions = Sequence([item])
    return ds


def ingest(root: Path, out: Path, *extra: str) -> int:
    return main(["ingest", "--format", "folder", "--root", str(root), "--out", str(out), *extra])


def write_bad(case: str, path: Path) -> Path:
    """One damaged file of each kind ingest must refuse."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if case == "truncated":
        save(mammo(), path)
        path.write_bytes(path.read_bytes()[:3000])
    elif case == "no PixelData":
        ds = mammo()
        del ds.PixelData
        save(ds, path)
    elif case == "short pixel data":
        ds = mammo()
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
        save(ds, path)
    elif case == "no decoder":  # a real JPEG 2000 file; its plugin is made unavailable by the test
        shutil.copy(bundled("examples_jpeg2k.dcm"), path)
    elif case == "NumberOfFrames 1A":
        save(raw(mammo(), "NumberOfFrames", "IS", b"1A"), path)
    else:  # pydicom's own badVR.dcm, unmodified
        shutil.copy(bundled("badVR.dcm"), path)
    return path


BAD = {
    "truncated": "truncated",
    "no PixelData": "has no PixelData",
    "short pixel data": "PixelData holds",
    "no decoder": "needs a decoder that is not installed: pip install pylibjpeg-openjpeg",
    "NumberOfFrames 1A": "NumberOfFrames is not an integer: '1A'",
    "badVR.dcm": "NumberOfFrames is not an integer: '1A'",
}


def test_pydicom_ultrasound_files_ingest_as_us_unknown_laterality_and_read_back(tmp_path: Path) -> None:
    root = tmp_path / "us"
    for name in US_FILES:
        shutil.copy(bundled(name), root / name) if root.exists() else (root.mkdir(), shutil.copy(bundled(name), root))
    out = tmp_path / "out" / "manifest.csv"
    assert ingest(root, out) == 0
    m = pd.read_csv(out)
    assert sorted(Path(p).name for p in m["path"]) == sorted(US_FILES)
    assert (m["modality"] == "US").all() and (m["laterality"] == "U").all() and (m["view"] == "US").all()
    assert not (out.parent / "skipped.csv").exists()
    assert "BAPTIST" not in out.read_text()  # InstitutionName is pseudonymised
    manifest, _ = load_dataset(out)  # the schema accepts the rows as written
    for row in manifest.to_dict("records"):
        image = read_image(out.parent / row["path"], row)
        frames = (row["n_slices"],) if row["n_slices"] > 1 else ()
        assert image.pixels.shape == (*frames, row["rows"], row["columns"], 3)
        assert image.meta["modality"] == "US"


@pytest.mark.parametrize("case", list(BAD))
def test_files_the_reader_rejects_are_rejected_by_ingest_or_skipped(
    case: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    if case == "no decoder":
        without_jpeg2000_plugin(monkeypatch)
    root = tmp_path / "archive"
    save(mammo(), root / "good.dcm")
    bad = write_bad(case, root / "pat" / f"bad_{case.split('.')[0].replace(' ', '_')}.dcm")
    with pytest.raises(DataError, match=BAD[case]):  # the reader itself says the same
        read_image(bad)
    out = tmp_path / "out" / "sub" / "manifest.csv"
    assert ingest(root, out) == 2
    err = capsys.readouterr().err
    assert bad.name in err and BAD[case] in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # no folder, no partial file
    assert ingest(root, out, "--skip-bad") == 0
    assert len(pd.read_csv(out)) == 1
    skipped = pd.read_csv(out.parent / "skipped.csv")
    assert skipped["file"].str.endswith(bad.name).tolist() == [True] and BAD[case] in skipped["reason"][0]


def test_nothing_usable_is_a_named_error_that_still_writes_skipped_csv(tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    write_bad("truncated", root / "a.dcm")
    write_bad("no PixelData", root / "b.dcm")
    out = tmp_path / "out" / "manifest.parquet"
    assert ingest(root, out, "--skip-bad") == 2
    err = capsys.readouterr().err
    skipped_csv = out.parent / "skipped.csv"
    assert "no usable images" in err and "all 2 input(s) were skipped" in err and str(skipped_csv) in err
    assert not out.exists() and sorted(p.name for p in out.parent.iterdir()) == ["skipped.csv"]
    assert sorted(Path(f).name for f in pd.read_csv(skipped_csv)["file"]) == ["a.dcm", "b.dcm"]


def test_optional_header_values_fall_back_instead_of_failing(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    save(raw(mammo(), "InstanceNumber", "IS", b"abc"), root / "instance.dcm")
    save(raw(mammo("R"), "ImagePositionPatient", "DS", b"0\\0&0"), root / "position.dcm")
    us = make_ds(np.zeros((6, 8, 3), np.uint8), SOP_US, "US", "RGB", 8)
    save(us_region(us, RegionLocationMinX0=0, RegionLocationMinY0=0, RegionLocationMaxX1=7), root / "region.dcm")
    out = tmp_path / "out" / "manifest.csv"
    assert ingest(root, out) == 0
    paths = {Path(p).name: out.parent / p for p in pd.read_csv(out)["path"]}
    assert sorted(paths) == ["instance.dcm", "position.dcm", "region.dcm"]
    assert read_image(paths["instance.dcm"]).meta["instance_number"] == 0
    assert read_image(paths["position.dcm"]).meta["image_position"] is None
    assert read_image(paths["region.dcm"]).meta["us_region"] is None


def test_header_checks_do_not_decode_unless_verify_pixels(tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "archive"
    save(mammo(), root / "mg.dcm")
    shutil.copy(bundled("examples_jpeg2k.dcm"), root / "us.dcm")

    def no_decode(ds, path, meta):
        raise DataError(f"{path}: decoded although only headers were to be checked")

    monkeypatch.setattr("breastssl.data.dicom.decode_pixels", no_decode)
    assert ingest(root, tmp_path / "a" / "m.csv") == 0
    assert ingest(root, tmp_path / "b" / "m.csv", "--verify-pixels") == 2
    assert "decoded although" in capsys.readouterr().err


def test_predict_folder_scan_names_malformed_files_and_ignores_non_breast_ones(tmp_path: Path) -> None:
    stack = np.stack([breast()] * 3)
    study = tmp_path / "study"
    save(enhanced_dbt(stack, [(2000.0, 4000.0)] * 3), study / "dbt.dcm")
    shutil.copy(bundled("badVR.dcm"), study / "badVR.dcm")  # an RT dose with a damaged header: not a DBT stack
    table, ignored = collect_stacks([study])
    assert len(table) == 1 and any("badVR.dcm" in i for i in ignored)
    with pytest.raises(DataError, match=r"badVR\.dcm: malformed header"):
        collect_stacks([study / "badVR.dcm"])
    save(raw(mammo(), "NumberOfFrames", "IS", b"1A"), study / "mg_frames.dcm")  # may be a stack: an error
    with pytest.raises(DataError, match=r"mg_frames\.dcm: malformed header .*NumberOfFrames"):
        collect_stacks([study])


def _archive(root: Path) -> None:
    save(mammo(), root / "Doe_Jane" / "mg.dcm")
    save(mammo("R", PatientID="1234567", InstitutionName="Other Hospital"), root / "Roe" / "mg.dcm")
    write_bad("truncated", root / "Doe_Jane" / "bad.dcm")


def test_keyed_pseudonyms_same_key_same_ids_other_key_other_ids_key_never_written(tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    _archive(root)
    key_a, key_b = tmp_path / "keys" / "a.key", tmp_path / "keys" / "b.key"
    runs = {}
    for name, key in [("a1", key_a), ("a2", key_a), ("b", key_b)]:
        out = tmp_path / name / "manifest.csv"
        assert ingest(root, out, "--key-file", str(key), "--skip-bad") == 0
        runs[name] = pd.read_csv(out).sort_values("image_id").reset_index(drop=True)
    assert "created the pseudonym key" in " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert stat.S_IMODE(key_a.stat().st_mode) == 0o600
    a1, a2, b = runs["a1"], runs["a2"], runs["b"]
    assert a1[["patient_id", "site"]].equals(a2[["patient_id", "site"]]) and a1["patient_id"].nunique() == 2
    assert a1["image_id"].equals(b["image_id"])  # UIDs are hashed without the key: the reader matches them
    assert not set(a1["patient_id"]) & set(b["patient_id"]) and not set(a1["site"]) & set(b["site"])
    unsalted = {f"p-{hashlib.sha256(v.encode()).hexdigest()[:12]}" for v in ("SECRET-ID-123", "1234567")}
    assert not unsalted & {p[:14] for p in a1["patient_id"]}
    secrets = [key.read_text().strip() for key in (key_a, key_b)]
    for key_hex in secrets:
        for output in [f for run in runs for f in (tmp_path / run).iterdir()]:
            data = output.read_bytes()
            assert key_hex.encode() not in data and bytes.fromhex(key_hex) not in data, output
    for text in ("SECRET-ID-123", "1234567", "Secret Hospital", "Other Hospital"):
        assert text not in (tmp_path / "a1" / "manifest.csv").read_text()
    (tmp_path / "keys" / "junk.key").write_text("not-a-key")
    assert ingest(root, tmp_path / "c" / "m.csv", "--key-file", str(tmp_path / "keys" / "junk.key")) == 2
    err = capsys.readouterr().err
    assert "junk.key: not a pseudonym key" in err and "not-a-key" not in err and not (tmp_path / "c").exists()


def test_relative_paths_store_nothing_above_the_root(tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    _archive(root)
    out = tmp_path / "elsewhere" / "manifest.csv"
    assert ingest(root, out, "--skip-bad", "--relative-paths") == 0
    assert "move the manifest" in " ".join(capsys.readouterr().out.split())
    written = out.read_text() + (out.parent / "skipped.csv").read_text()
    assert str(tmp_path) not in written and ".." not in written
    assert sorted(pd.read_csv(out)["path"]) == ["Doe_Jane/mg.dcm", "Roe/mg.dcm"]
    skipped = pd.read_csv(out.parent / "skipped.csv")
    assert skipped["file"].tolist() == ["Doe_Jane/bad.dcm"] and skipped["reason"][0].startswith("Doe_Jane/bad.dcm:")
    inside = root / "manifest.csv"  # written into the root, the manifest resolves its own paths
    assert ingest(root, inside, "--skip-bad", "--relative-paths") == 0
    assert len(load_dataset(inside)[0]) == 2
    default = tmp_path / "default" / "manifest.csv"
    assert ingest(root, default, "--skip-bad") == 0
    assert all(p.startswith("../archive/") for p in pd.read_csv(default)["path"])


def test_unwritable_out_and_late_failures_leave_nothing(tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    save(mammo(), root / "mg.dcm")
    (tmp_path / "afile").write_text("x")
    assert ingest(root, tmp_path / "afile" / "sub" / "manifest.csv") == 2
    assert "afile is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "dir.csv").mkdir()
    assert ingest(root, tmp_path / "dir.csv") == 2
    assert "is a folder" in capsys.readouterr().err
    # a failure after the output folder was made (the labels give an invalid breast_label): the folder goes too
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": ["mg.dcm"], "breast_label": ["maybe"]}).to_csv(labels, index=False)
    out = tmp_path / "new" / "deeper" / "manifest.csv"
    assert ingest(root, out, "--labels", str(labels)) == 2
    assert "maybe" in capsys.readouterr().err and not (tmp_path / "new").exists()


def test_objects_that_are_not_breast_images_are_refused_by_name(tmp_path: Path, capsys) -> None:
    root = tmp_path / "archive"
    save(mammo(), root / "mg.dcm")
    sc = make_ds(np.zeros((8, 8), np.uint8), "1.2.840.10008.5.1.4.1.1.7", "OT", bits_stored=8)  # secondary capture
    save(sc, root / "capture.dcm")
    out = tmp_path / "out" / "manifest.csv"
    assert ingest(root, out) == 2
    assert "capture.dcm: not a breast image (Modality OT" in " ".join(capsys.readouterr().err.split())
    assert ingest(root, out, "--skip-bad") == 0 and len(pd.read_csv(out)) == 1


def test_seeded_mutations_ingest_accepts_only_what_the_reader_reads(tmp_path: Path) -> None:
    """Byte flips and truncations: the header check raises only DataErrors naming the file, and every file it
    accepts is read by ``read_image`` (ingest is as strict as the reader)."""
    from breastssl.data.dicom_check import check_file

    sources = [save(mammo(), tmp_path / "mg.dcm"), bundled("examples_palette.dcm"), bundled("examples_ybr_color.dcm")]
    sources.append(save(enhanced_dbt(np.stack([breast()] * 3), [(2000.0, 4000.0)] * 3), tmp_path / "dbt.dcm"))
    rng = np.random.default_rng(17)
    target, accepted = tmp_path / "fuzz.dcm", 0
    for k in range(160):
        data = bytearray(sources[k % len(sources)].read_bytes())
        if rng.random() < 0.3:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 10))):
                data[int(rng.integers(128, min(len(data), 1600)))] = int(rng.integers(0, 256))
        target.write_bytes(bytes(data))
        try:
            check_file(target)
        except DataError as exc:
            assert "fuzz.dcm" in str(exc)
            continue
        accepted += 1
        read_image(target)  # a DataError here would be a file ingest let through
    assert 10 < accepted < 150  # the mutations bite, and not everything is refused
