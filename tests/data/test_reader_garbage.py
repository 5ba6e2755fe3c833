"""The reader never turns absurd attributes into silent garbage (issue 17).

Invalid spacing → unknown (None) with a warning; a header that disagrees with its codestream, SamplesPerPixel
that does not fit the PhotometricInterpretation, a zero or non-finite RescaleSlope, and an image the LUTs make
constant or non-finite → DataError naming the file and the values; an unusable window → ignored with a
warning. A well-formed file still reads exactly by the documented transforms.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from conftest import SOP_US, breast, enhanced_dbt, make_ds, save
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import RLELossless

from breastssl.data import dicom as dicom_reader
from breastssl.data.dicom import read_image, read_npy
from breastssl.data.dicom_check import check_file
from breastssl.data.dicom_sanity import check_shape
from breastssl.errors import DataError

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def mammo(name: str, tmp_path: Path, pixels: np.ndarray | None = None, **attrs: Any) -> Path:
    """A left CC mammogram with ``attrs`` set; pydicom's warnings about non-conformant values (inf, nan) muted."""
    attrs = {"ImageLaterality": "L", "ViewPosition": "CC", **attrs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save(make_ds(breast() if pixels is None else pixels, **attrs), tmp_path / name)


def read_warned(path: Path, voi: bool = True) -> tuple[Any, list[str]]:
    """The image and the reader's warnings that name ``path``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image = read_image(path, voi=voi)
    return image, [str(w.message) for w in caught if str(path) in str(w.message)]


def minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return (x - x.min()) / (x.max() - x.min())


# --- 1. spacing: not a number in metadata, but unknown with a warning ---------------------------------------


@pytest.mark.parametrize(
    ("attr", "value", "shown"),
    [
        ("PixelSpacing", [-0.1, 0.1], "PixelSpacing=-0.1\\0.1"),
        ("PixelSpacing", [0, 0], "PixelSpacing=0"),
        ("PixelSpacing", ["nan", "0.1"], "PixelSpacing=nan"),
        ("PixelSpacing", ["inf", "inf"], "PixelSpacing=inf"),
        ("PixelSpacing", ["0.1"], "PixelSpacing=0.1"),  # one value: a spacing needs (row, column)
        ("ImagerPixelSpacing", [0.1, -0.1], "ImagerPixelSpacing=0.1\\-0.1"),
        ("SliceThickness", -1.0, "SliceThickness=-1"),
        ("SliceThickness", "nan", "SliceThickness=nan"),
    ],
)
def test_invalid_spacing_is_unknown_with_warning(tmp_path: Path, attr: str, value: object, shown: str) -> None:
    path = mammo("sp.dcm", tmp_path, WindowCenter=2000, WindowWidth=4000, **{attr: value})
    image, said = read_warned(path)
    assert image.meta["spacing"] is None and image.meta["slice_thickness"] is None
    assert len(said) == 1 and shown in said[0] and "unknown (None)" in said[0]


def test_invalid_pixel_spacing_falls_back_to_imager_spacing(tmp_path: Path) -> None:
    path = mammo("fallback.dcm", tmp_path, PixelSpacing=[-0.1, -0.1], ImagerPixelSpacing=[0.085, 0.085])
    image, said = read_warned(path)
    assert image.meta["spacing"] == [0.085, 0.085]
    assert len(said) == 1 and "PixelSpacing=-0.1\\-0.1" in said[0]


def test_per_frame_spacing_warns_once_per_file(tmp_path: Path) -> None:
    ds = enhanced_dbt(np.stack([breast()] * 4), [(2000, 4000)] * 4, spacing=-0.1)
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].SliceThickness = 0.0
    image, said = read_warned(save(ds, tmp_path / "dbt.dcm"))
    assert image.pixels.shape == (4, 40, 32)
    assert image.meta["spacing"] is None and image.meta["slice_thickness"] is None
    assert len(said) == 1 and "PixelSpacing=-0.1\\-0.1" in said[0] and "SliceThickness=0" in said[0]


@pytest.mark.parametrize("delta", [-0.01, 0.0, float("nan"), float("inf")])
def test_invalid_ultrasound_region_delta_is_unknown(tmp_path: Path, delta: object) -> None:
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 31, 39
    region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        region.PhysicalDeltaX, region.PhysicalDeltaY = 0.01, delta
        ds = make_ds(breast().astype(np.uint8), SOP_US, "US", bits_stored=8)
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    path = save(ds, tmp_path / "us.dcm")
    image, said = read_warned(path)
    assert image.meta["spacing"] is None
    assert len(said) == 1 and "PhysicalDeltaY/PhysicalDeltaX" in said[0]
    region.PhysicalDeltaY = 0.02  # a valid region still gives mm (cm × 10), without a warning
    image, said = read_warned(save(ds, tmp_path / "us_ok.dcm"))
    assert image.meta["spacing"] == pytest.approx([0.2, 0.1]) and not said


def test_npy_manifest_spacing_rule_is_the_same(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", breast().astype(np.float32))
    with pytest.warns(UserWarning, match=r"a\.npy: manifest spacing=-1\.0"):
        assert read_npy(tmp_path / "a.npy", {"spacing": -1.0}).meta["spacing"] is None
    assert read_npy(tmp_path / "a.npy", {"spacing": 0.07}).meta["spacing"] == [0.07, 0.07]


# --- 2. compressed data whose codestream disagrees with Rows/Columns -----------------------------------------


def bundled(name: str, tmp_path: Path, **attrs: Any) -> Path:
    """A copy of one of pydicom's bundled test files with header ``attrs`` changed (skip if not shipped)."""
    source = PYDICOM_FILES / name
    if not source.is_file():
        pytest.skip(f"pydicom's {name} is not installed")
    ds = pydicom.dcmread(source)
    for key, value in attrs.items():
        setattr(ds, key, value)
    out = tmp_path / f"{'_'.join(attrs) or 'orig'}_{name}"
    ds.save_as(out)
    return out


@pytest.mark.parametrize(
    ("name", "full_shape", "kind"),
    [
        ("JPEG2000.dcm", (1024, 256), "JPEG 2000"),  # NM, grey, JPEG 2000
        ("examples_ybr_color.dcm", (30, 240, 320, 3), "JPEG"),  # US cine, JPEG baseline YBR_FULL_422
        ("JPGExtended.dcm", (1024, 256), "JPEG"),  # JPEG extended, 12 bits
    ],
)
def test_codestream_size_disagreeing_with_header(
    tmp_path: Path, name: str, full_shape: tuple[int, ...], kind: str
) -> None:
    original = bundled(name, tmp_path)
    if not get_decoder(pydicom.dcmread(original).file_meta.TransferSyntaxUID).is_available:
        pytest.skip(f"no decoder installed for {name}")
    assert read_image(original).pixels.shape == full_shape  # unmodified: reads at the codestream's size
    rows, cols = full_shape[-3:-1] if len(full_shape) == 4 else full_shape
    # swapped: the same pixel count, so pydicom alone would reshape each decoded frame into a scrambled image
    swapped = bundled(name, tmp_path, Rows=cols, Columns=rows)
    with pytest.raises(DataError, match=re.escape(str(swapped))) as err:
        read_image(swapped)
    assert f"Rows×Columns={cols}×{rows}" in str(err.value) and f"but {rows}×{cols} with" in str(err.value)
    assert f"the {kind} codestream of frame 1" in str(err.value)
    half = bundled(name, tmp_path, Rows=rows // 2)  # pydicom alone fails with "could not broadcast ..."
    with pytest.raises(DataError, match=rf"{re.escape(half.name)}: header and compressed pixel data disagree"):
        read_image(half)


def test_rle_segment_longer_than_rows_columns(tmp_path: Path) -> None:
    ds = make_ds(breast(), ImageLaterality="L", ViewPosition="CC")
    ds.compress(RLELossless)
    image = read_image(save(ds, tmp_path / "rle.dcm"))
    assert image.pixels.shape == (40, 32)
    ds.Rows = 20
    with pytest.raises(DataError, match=r"rle_half\.dcm: header and RLE pixel data disagree: .*1280 bytes.*20×32"):
        read_image(save(ds, tmp_path / "rle_half.dcm"))


# --- 3. SamplesPerPixel against PhotometricInterpretation, and the shapes a reader may return ----------------


@pytest.mark.parametrize(
    ("photometric", "spp", "need"),
    [("PALETTE COLOR", 3, 1), ("MONOCHROME2", 3, 1), ("MONOCHROME1", 3, 1), ("RGB", 1, 3), ("YBR_FULL", 1, 3)],
)
def test_samples_per_pixel_must_fit_photometric(tmp_path: Path, photometric: str, spp: int, need: int) -> None:
    rng = np.random.default_rng(0)
    px = rng.integers(0, 255, (8, 10, 3) if spp == 3 else (8, 10), dtype=np.uint8)
    ds = make_ds(px, SOP_US, "US", "RGB" if spp == 3 else "MONOCHROME2", 8)
    ds.PhotometricInterpretation = photometric
    if photometric == "PALETTE COLOR":  # a complete palette: before the check this read as (8, 10, 3, 3)
        for colour in ("Red", "Green", "Blue"):
            setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 8])
            setattr(ds, f"{colour}PaletteColorLookupTableData", bytes(range(256)))
    path = save(ds, tmp_path / "spp.dcm")
    expected = rf"spp\.dcm: .*PhotometricInterpretation {photometric} needs SamplesPerPixel={need} .*={spp}"
    with pytest.raises(DataError, match=expected):
        read_image(path)
    with pytest.raises(DataError, match=expected):  # ingest applies the same check without decoding
        check_file(path)


def test_no_reader_returns_an_undocumented_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for bad in [(2, 4, 4, 3, 3), (4,), (2, 4, 4, 4), (0, 4)]:
        with pytest.raises(DataError, match=r"x\.dcm: decoded pixels have shape"):
            check_shape(np.zeros(bad, np.float32), Path("x.dcm"))
    for good in [(4, 5), (3, 4, 5), (4, 5, 3), (2, 4, 5, 3)]:
        check_shape(np.zeros(good, np.float32), Path("x.dcm"))
    rgb = np.random.default_rng(0).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    path = save(make_ds(rgb, SOP_US, "US", "RGB", 8), tmp_path / "rgb.dcm")
    # what a palette expanded on top of samples gave before: the decode-time shape check names both shapes
    monkeypatch.setattr(dicom_reader, "_colour", lambda raw, *a: np.repeat(raw[..., None], 3, -1) / 255.0)
    with pytest.raises(DataError, match=r"rgb\.dcm: pixels of shape \(1, 8, 10, 3, 3\) .* says \(1, 8, 10, 3\)"):
        read_image(path)


# --- 4. rescale and window values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"RescaleSlope": 0}, r"RescaleSlope 0 is zero"),
        ({"RescaleSlope": "inf"}, r"RescaleSlope inf is not finite"),
        ({"RescaleSlope": "nan"}, r"RescaleSlope nan is not finite"),
        ({"RescaleIntercept": "inf"}, r"RescaleIntercept inf is not finite"),
        ({"RescaleSlope": "1e38"}, r"image is non-finite after the Modality LUT \(RescaleSlope 1e\+38"),
        (
            {"RescaleIntercept": "1e30"},  # float32 cannot hold 1e30 + x apart from 1e30: every pixel the same
            r"image is constant after the Modality LUT \(RescaleSlope 1, RescaleIntercept 1e\+30\)",
        ),
        (
            {"WindowCenter": 1e6, "WindowWidth": 10},
            r"image is constant after the Modality and VOI LUTs \(RescaleSlope 1, RescaleIntercept 0, "
            r"window center 1e\+06 width 10\) although its stored pixels vary",
        ),
    ],
)  # fmt: skip
def test_absurd_rescale_or_window_fails_by_name(tmp_path: Path, attrs: dict[str, object], message: str) -> None:
    path = mammo("lut.dcm", tmp_path, **attrs)
    with pytest.raises(DataError, match=rf"lut\.dcm: {message}"):
        read_image(path)
    if "WindowCenter" not in attrs:  # the Modality LUT alone (voi=False, as the DBT slice loader reads) fails too
        with pytest.raises(DataError, match=r"lut\.dcm: "):
            read_image(path, voi=False)


@pytest.mark.parametrize("slope", [0, "nan"])
def test_ingest_check_rejects_a_zero_or_nan_slope(tmp_path: Path, slope: object) -> None:
    with pytest.raises(DataError, match=rf"slope\.dcm: RescaleSlope {slope}"):
        check_file(mammo("slope.dcm", tmp_path, RescaleSlope=slope))


@pytest.mark.parametrize(
    ("center", "width", "shown"),
    [(2000, "inf", "width inf"), (2000, 0, "width 0"), (2000, -5, "width -5"), ("nan", 4000, "center nan"),
     (2000, 0.5, "width 0.5")],  # LINEAR needs a width ≥ 1
)  # fmt: skip
def test_unusable_window_is_ignored_with_warning(tmp_path: Path, center: object, width: object, shown: str) -> None:
    path = mammo("win.dcm", tmp_path, WindowCenter=center, WindowWidth=width)
    image, said = read_warned(path)
    assert len(said) == 1 and "ignoring unusable VOI window(s)" in said[0] and shown in said[0]
    assert image.meta["window_source"] == "minmax" and "window" not in image.meta
    np.testing.assert_allclose(image.pixels, minmax(breast()), atol=1e-6)  # as without a window


def test_next_valid_window_is_used(tmp_path: Path) -> None:
    path = mammo("two.dcm", tmp_path, WindowCenter=["nan", 2000], WindowWidth=[4000, 4000])
    image, said = read_warned(path)
    assert len(said) == 1 and "next valid window" in said[0]
    assert image.meta["window"] == [2000.0, 4000.0] and image.meta["window_source"] == "tags"


def test_unusable_per_frame_window_falls_back_for_the_stack(tmp_path: Path) -> None:
    stack = np.stack([breast()] * 3)
    ds = enhanced_dbt(stack, [(2000, 4000), (2000, 0), (2000, 4000)])
    image, said = read_warned(save(ds, tmp_path / "dbt.dcm"))
    assert len(said) == 1 and "center 2000 width 0" in said[0]
    assert image.meta["window_source"] == "minmax" and image.pixels.shape == (3, 40, 32)


def test_unusable_window_on_ultrasound_falls_back_to_stored_range(tmp_path: Path) -> None:
    px = breast(top=200).astype(np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = make_ds(px, SOP_US, "US", bits_stored=8, WindowCenter=128, WindowWidth="inf")
    image, said = read_warned(save(ds, tmp_path / "us.dcm"))
    assert len(said) == 1 and image.meta["window_source"] == "bits_stored"
    np.testing.assert_allclose(image.pixels, px / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "attrs", [{"WindowCenter": 2000, "WindowWidth": 4000}, {"WindowCenter": 1e6, "WindowWidth": 10}, {}]
)
def test_blank_stored_image_stays_legal(tmp_path: Path, attrs: dict[str, object]) -> None:
    blank = np.full((40, 32), 50, np.uint16)  # e.g. an empty DBT end slice: constant output is the truth
    image, said = read_warned(mammo("blank.dcm", tmp_path, pixels=blank, **attrs))
    assert image.pixels.shape == (40, 32) and np.ptp(image.pixels) == 0 and not said


# --- 5. a well-formed file reads exactly by the documented transforms -----------------------------------------


def test_well_formed_file_reads_by_the_documented_transforms(tmp_path: Path) -> None:
    """bits masking → slope·x + intercept → LINEAR window (PS3.3 C.11.2.1.2) → MONOCHROME1 inversion."""
    stored = breast()
    junk_high_bits = stored | np.uint16(0xF000)  # BitsStored 12: the top 4 bits are masked off
    path = mammo(
        "ok.dcm", tmp_path, pixels=junk_high_bits, photometric="MONOCHROME1", RescaleSlope=2, RescaleIntercept=-10,
        WindowCenter=4000, WindowWidth=6000, PixelSpacing=[0.07, 0.065], SliceThickness=0.5,
    )  # fmt: skip
    image, said = read_warned(path)
    modality = stored.astype(np.float64) * 2 - 10
    windowed = np.clip((modality - (4000 - 0.5)) / (6000 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, 1.0 - windowed, atol=1e-6)
    assert image.pixels.dtype == np.float32 and not said
    meta = image.meta
    assert meta["spacing"] == [0.07, 0.065] and meta["slice_thickness"] == 0.5
    assert meta["window"] == [4000.0, 6000.0] and meta["window_source"] == "tags"
    modality_only, said = read_warned(path, voi=False)
    np.testing.assert_allclose(modality_only.pixels, modality, atol=1e-3)
    assert not said


def test_well_formed_windows_at_the_edges_are_kept(tmp_path: Path) -> None:
    """Width 1 (LINEAR threshold) and a width below 1 for LINEAR_EXACT are valid: applied, not ignored."""
    image, said = read_warned(mammo("w1.dcm", tmp_path, WindowCenter=2000, WindowWidth=1))
    assert not said and image.meta["window"] == [2000.0, 1.0]
    np.testing.assert_array_equal(image.pixels, (breast() > 1999.5).astype(np.float32))
    px = np.tile(np.arange(8, dtype=np.uint16), (8, 1))
    exact = mammo("exact.dcm", tmp_path, pixels=px, WindowCenter=3.5, WindowWidth=0.5, VOILUTFunction="LINEAR_EXACT")
    image, said = read_warned(exact)
    assert not said and image.meta["voi_function"] == "LINEAR_EXACT"
    np.testing.assert_allclose(image.pixels, np.clip((px - 3.5) / 0.5 + 0.5, 0, 1), atol=1e-6)
