"""Bad input: clear DataErrors naming the file, CLI exit codes, --skip-bad, and a corruption fuzz test."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SOP_US, breast, enhanced_dbt, make_ds, save
from pydicom.encaps import encapsulate

from breastssl.cli import main
from breastssl.data import dicom_pixels
from breastssl.data.dicom import read_image
from breastssl.errors import DataError


def test_missing_file_and_not_dicom(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.dcm: file does not exist"):
        read_image(tmp_path / "nope.dcm")
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"hello world" * 10)
    with pytest.raises(DataError, match="junk.dcm"):
        read_image(junk)


def test_truncated_file(mammo_file: Path) -> None:
    data = mammo_file.read_bytes()
    mammo_file.write_bytes(data[: len(data) - 300])
    with pytest.raises(DataError, match=r"mg\.dcm: .*(truncated|PixelData holds)"):
        read_image(mammo_file)


def test_missing_pixel_data(tmp_path: Path) -> None:
    ds = make_ds(breast(), ImageLaterality="L", ViewPosition="CC")
    del ds.PixelData
    with pytest.raises(DataError, match="nopix.dcm: has no PixelData"):
        read_image(save(ds, tmp_path / "nopix.dcm"))


def test_frame_count_disagrees_with_header(tmp_path: Path) -> None:
    ds = enhanced_dbt(np.stack([breast()] * 4), [(2000, 4000)] * 4)
    ds.NumberOfFrames = 6
    with pytest.raises(DataError, match=r"frames\.dcm: PixelData holds .*NumberOfFrames=6"):
        read_image(save(ds, tmp_path / "frames.dcm"))


def test_unknown_transfer_syntax_and_missing_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = make_ds(np.zeros((4, 4), np.uint8), SOP_US, "US", bits_stored=8)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000, but the codestream is junk
    ds.PixelData = encapsulate([b"\x00\x01" * 8])
    path = save(ds, tmp_path / "j2k.dcm")

    class Missing:
        is_available = False

    monkeypatch.setattr("pydicom.pixels.get_decoder", lambda ts: Missing())
    with pytest.raises(DataError, match=r"j2k\.dcm: .*not installed: pip install pylibjpeg-openjpeg"):
        read_image(path)
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"j2k\.dcm: pixel data cannot be decoded"):
        read_image(path)
    with pytest.raises(DataError, match="has no decoder"):
        dicom_pixels.check_decoder("1.2.840.10008.1.2.4.110", path)  # JPEG XL: no decoder in pydicom 3.0


def test_cli_ingest_bad_root_and_skip_bad(tmp_path: Path, mammo_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["ingest", "--format", "folder", "--root", str(tmp_path / "absent"), "--out", str(tmp_path / "m.csv")])
        == 2
    )
    assert "absent" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["ingest", "--format", "bcs-dbt", "--root", str(empty), "--out", str(tmp_path / "m.csv")]) == 2
    assert "does not look like a bcs-dbt dataset" in capsys.readouterr().err
    root = tmp_path / "archive"
    shutil.copy(mammo_file, root / "good.dcm") if root.exists() else (
        root.mkdir(),
        shutil.copy(mammo_file, root / "good.dcm"),
    )
    (root / "bad.dcm").write_bytes(mammo_file.read_bytes()[:200])
    out = tmp_path / "out" / "manifest.csv"
    assert main(["ingest", "--format", "folder", "--root", str(root), "--out", str(out)]) == 2
    assert "bad.dcm" in capsys.readouterr().err and not out.exists()
    assert main(["ingest", "--format", "folder", "--root", str(root), "--out", str(out), "--skip-bad"]) == 0
    skipped = pd.read_csv(out.parent / "skipped.csv")
    assert list(skipped.columns) == ["file", "reason"] and skipped["file"].str.endswith("bad.dcm").all()
    assert len(pd.read_csv(out)) == 1


def test_fuzz_corrupted_files_raise_only_dataerror(tmp_path: Path, mammo_file: Path, dbt_file: Path) -> None:
    """Random byte flips and truncations of valid files: every outcome is an Image or a DataError."""
    rgb = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    us = save(make_ds(rgb, SOP_US, "US", "RGB", 8), tmp_path / "us.dcm")
    rng = np.random.default_rng(1234)
    target = tmp_path / "fuzz.dcm"
    outcomes = {"ok": 0, "error": 0}
    for k in range(300):
        data = bytearray([mammo_file, dbt_file, us][k % 3].read_bytes())
        if rng.random() < 0.3:
            data = data[: int(rng.integers(0, len(data)))]
        else:
            for _ in range(int(rng.integers(1, 12))):
                pos = int(rng.integers(128, max(129, min(len(data), 1400))))  # mostly the header
                data[pos] = int(rng.integers(0, 256))
        target.write_bytes(bytes(data))
        try:
            read_image(target)
            outcomes["ok"] += 1
        except DataError as exc:
            assert "fuzz.dcm" in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 10
