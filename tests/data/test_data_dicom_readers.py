"""DICOM readers: LUTs and windowing against hand-computed values, MG / DBT / US variants, metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import SOP_BTO, SOP_MG_PROC, SOP_US, SOP_US_MF, breast, enhanced_dbt, make_ds, save
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from breastssl.data import dicom_lut as lut
from breastssl.data.dicom import read_image, read_series

PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


def bundled(name: str) -> Path:
    path = PYDICOM_DATA / name
    if not path.exists():  # never download: only files shipped inside the pydicom wheel
        pytest.skip(f"{name} not bundled with this pydicom")
    return path


def test_window_functions_match_hand_computed_values() -> None:
    x = np.array([0.0, 1000.0, 1999.5, 3000.0, 5000.0])
    # LINEAR (PS3.3 C.11.2.1.2.1): ((x - (c - 0.5)) / (w - 1) + 0.5), clipped
    np.testing.assert_allclose(
        lut.window(x, 2000, 4000), [0.0, 0.5 - 999.5 / 3999, 0.5, 0.5 + 1000.5 / 3999, 1.0], atol=1e-6
    )
    # LINEAR_EXACT: (x - c) / w + 0.5
    np.testing.assert_allclose(lut.window(x, 2000, 4000, "LINEAR_EXACT"), [0.0, 0.25, 0.499875, 0.75, 1.0], atol=1e-6)
    # SIGMOID: 1 / (1 + exp(-4 (x - c) / w)); x = 1000 → 1 / (1 + e)
    np.testing.assert_allclose(lut.window(x[1:2], 2000, 4000, "SIGMOID"), [1 / (1 + np.e)], atol=1e-6)
    assert lut.window(np.array([0.0, 1.0]), 0.5, 1).tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        lut.window(x, 0, 0.5)


def test_mammogram_windowed_and_monochrome1_inverted(tmp_path: Path) -> None:
    px = np.array([[0, 1000], [2000, 4000]], dtype=np.uint16)
    kw = {"WindowCenter": 2000, "WindowWidth": 4000, "ImageLaterality": "L", "ViewPosition": "CC"}
    m2 = read_image(save(make_ds(px, **kw), tmp_path / "m2.dcm"))
    m1 = read_image(save(make_ds(px, photometric="MONOCHROME1", **kw), tmp_path / "m1.dcm"))
    expected = lut.window(px.astype(np.float32), 2000, 4000)
    np.testing.assert_allclose(m2.pixels, expected, atol=1e-6)
    np.testing.assert_allclose(m1.pixels, 1.0 - expected, atol=1e-6)
    assert m1.meta["photometric"] == "MONOCHROME1" and m2.pixels.dtype == np.float32


def test_rescale_bits_stored_and_voi_lut_sequence(tmp_path: Path) -> None:
    # 12 bits stored; junk in the 4 high bits must be masked away before the Modality LUT
    px = np.array([[0x0010 | 0xF000, 0x0020]], dtype=np.uint16)
    ds = make_ds(px, RescaleSlope=2, RescaleIntercept=-10, ImageLaterality="L", ViewPosition="CC")
    raw = read_image(save(ds, tmp_path / "r.dcm"), voi=False)
    np.testing.assert_allclose(raw.pixels, [[2 * 16 - 10, 2 * 32 - 10]])
    item = Dataset()
    item.LUTDescriptor = [4, 20, 8]  # 4 entries, first input 20, 8-bit output
    item.add_new(0x00283006, "US", [0, 51, 102, 255])  # LUTData
    ds.VOILUTSequence = Sequence([item])
    out = read_image(save(ds, tmp_path / "v.dcm"))
    # modality values 22 and 54 → entries 2 and 3 (clamped) → 102/255 and 255/255
    np.testing.assert_allclose(out.pixels, [[102 / 255, 1.0]], atol=1e-6)
    assert out.meta["window_source"] == "voi_lut_sequence"


def test_signed_pixels_sign_extended(tmp_path: Path) -> None:
    px = np.array([[-5, 7]], dtype=np.int16)
    out = read_image(save(make_ds(px, ImageLaterality="L", ViewPosition="CC"), tmp_path / "s.dcm"), voi=False)
    np.testing.assert_allclose(out.pixels, [[-5, 7]])


def test_for_processing_without_window_uses_range(tmp_path: Path) -> None:
    ds = make_ds(
        breast(), SOP_MG_PROC, ImageLaterality="R", ViewPosition="MLO", PresentationIntentType="FOR PROCESSING"
    )
    im = read_image(save(ds, tmp_path / "p.dcm"))
    assert im.meta["window_source"] == "minmax" and im.pixels.min() == 0.0 and im.pixels.max() == 1.0
    assert im.meta["sop_class_name"].endswith("For Processing")


def test_enhanced_dbt_per_frame_windows_and_meta(dbt_file: Path) -> None:
    im = read_image(dbt_file)
    assert im.pixels.shape == (5, 40, 32) and im.meta["modality"] == "DBT" and im.meta["n_frames"] == 5
    stored = breast().astype(np.float32)
    for z in range(5):
        np.testing.assert_allclose(im.pixels[z], lut.window(stored, 2000 + 100 * z, 4000), atol=1e-6)
    assert im.meta["window_source"] == "per_frame" and im.meta["spacing"] == [0.1, 0.1]
    assert im.meta["view"] == "MLO" and im.meta["laterality"] == "L"


def test_legacy_series_ordered_by_position(tmp_path: Path) -> None:
    series_uid, files = pydicom.uid.generate_uid(), []
    for z in [3, 0, 2, 1]:  # written out of order
        px = breast(top=3000) + np.uint16(100 * z)
        ds = make_ds(px, ImageLaterality="R", ViewPosition="CC", WindowCenter=2000, WindowWidth=4000)
        ds.SeriesInstanceUID, ds.InstanceNumber = series_uid, 10 - z
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0, 0, float(z)], [1, 0, 0, 0, 1, 0]
        files.append(save(ds, tmp_path / "series" / f"f{z}.dcm"))
    im = read_series(files)
    assert im.pixels.shape == (4, 40, 32) and im.meta["modality"] == "DBT"
    means = im.pixels.mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0)  # slice z has +100·z: order follows ImagePositionPatient
    assert read_image(tmp_path / "series").pixels.shape == (4, 40, 32)


def test_laterality_tag_missing_or_contradicted_falls_back_to_image(tmp_path: Path) -> None:
    right = breast(side="right")
    kw = {"ViewPosition": "CC", "WindowCenter": 2000, "WindowWidth": 4000}
    untagged = read_image(save(make_ds(right, **kw), tmp_path / "a.dcm"))
    assert untagged.meta["laterality"] == "R" and untagged.meta["laterality_source"] == "image"
    wrong = read_image(save(make_ds(right, ImageLaterality="L", **kw), tmp_path / "b.dcm"))
    assert wrong.meta["laterality"] == "R" and "contradicted" in wrong.meta["laterality_source"]
    mirrored = read_image(
        save(make_ds(right, ImageLaterality="L", PatientOrientation=["P", "F"], **kw), tmp_path / "c.dcm")
    )
    assert mirrored.meta["laterality"] == "L"


def test_no_patient_identifiers_in_meta(mammo_file: Path, dbt_file: Path) -> None:
    for path in (mammo_file, dbt_file):
        text = repr(read_image(path).meta)
        for secret in ("SECRET-ID-123", "Doe", "19600101", "Secret Hospital", "ACC999"):
            assert secret not in text


def test_ultrasound_rgb_single_and_cine(tmp_path: Path) -> None:
    rgb = np.zeros((6, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255
    one = read_image(save(make_ds(rgb, SOP_US, "US", "RGB", 8), tmp_path / "u.dcm"))
    assert one.pixels.shape == (6, 8, 3) and one.meta["view"] == "US"
    np.testing.assert_allclose(one.pixels[0, 0], [1.0, 0.0, 0.0])
    cine = np.stack([rgb] * 4)
    multi = read_image(save(make_ds(cine, SOP_US_MF, "US", "RGB", 8, frames=True), tmp_path / "c.dcm"))
    assert multi.pixels.shape == (4, 6, 8, 3) and multi.meta["n_frames"] == 4
    mono = np.arange(48, dtype=np.uint8).reshape(6, 8)
    m = read_image(save(make_ds(mono, SOP_US, "US", bits_stored=8), tmp_path / "m.dcm"))
    np.testing.assert_allclose(m.pixels, mono / 255.0, atol=1e-6)


def test_ultrasound_jpeg2000_roundtrip(tmp_path: Path) -> None:
    from pydicom.uid import JPEG2000Lossless

    img = (np.arange(32 * 40).reshape(32, 40) % 251).astype(np.uint8)
    ds = make_ds(img, SOP_US, "US", bits_stored=8)
    ds.compress(JPEG2000Lossless, img)
    out = read_image(save(ds, tmp_path / "j2k.dcm"))
    np.testing.assert_allclose(out.pixels, img / 255.0, atol=1e-6)


def test_bundled_colour_files_ybr_palette_jpeg() -> None:
    ybr = read_image(bundled("SC_ybr_full_422_uncompressed.dcm"))
    jpeg = read_image(bundled("SC_rgb_jpeg_dcmtk.dcm"))  # JPEG baseline, YBR_FULL
    assert ybr.pixels.shape == jpeg.pixels.shape == (100, 100, 3)
    np.testing.assert_allclose(ybr.pixels[0, 0], [1.0, 0.0, 0.0], atol=0.03)  # the top band is red
    np.testing.assert_allclose(jpeg.pixels[0, 0], [1.0, 0.0, 0.0], atol=0.03)
    palette = read_image(bundled("examples_palette.dcm"))
    assert (
        palette.pixels.ndim == 3
        and palette.pixels.shape[-1] == 3
        and 0 <= palette.pixels.min() <= palette.pixels.max() <= 1
    )
    cine = read_image(bundled("examples_ybr_color.dcm"))  # JPEG baseline YBR_FULL_422 ultrasound cine
    assert cine.pixels.shape[0] > 1 and cine.pixels.shape[-1] == 3 and cine.meta["modality"] == "US"
    j2k = read_image(bundled("examples_jpeg2k.dcm"))
    assert j2k.pixels.shape[-1] == 3 and np.isfinite(j2k.pixels).all()


def test_breast_tomo_sop_recognised(tmp_path: Path) -> None:
    ds = enhanced_dbt(np.stack([breast(side="right")] * 3), [(2000, 4000)] * 3, lat="R")
    im = read_image(save(ds, tmp_path / "r.dcm"))
    assert im.meta["sop_class"] == SOP_BTO and im.meta["laterality"] == "R" and im.meta["laterality_source"] == "tag"
