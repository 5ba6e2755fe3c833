"""Synthetic ultrasound generator: reproducibility, formats, labels, and the properties methods rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from breastssl.data.schema import LESION_COLUMNS, MANIFEST_COLUMNS, load_dataset
from breastssl.data.synth.common import mask_bbox, rng_for
from breastssl.data.synth.dicom_write import SOP_US
from breastssl.data.synth.us import USSynthConfig, image_plan, render_image
from breastssl.data.synth.us_dataset import posterior_contrast, speckle_correlation, us_modality
from breastssl.data.synth.us_nodule import make_nodule
from breastssl.data.synth.writer import generate_dataset

N = 12


def _config(**site_updates: dict) -> USSynthConfig:
    cfg = USSynthConfig()
    for name, upd in site_updates.items():
        cfg.sites[name] = cfg.sites[name].model_copy(update=upd)
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve images, both sites equally likely, written as DICOM with one worker."""
    cfg = _config(**{"site-A": {"weight": 0.5}, "site-B": {"weight": 0.5}})
    out = tmp_path_factory.mktemp("us") / "ds"
    generate_dataset(us_modality(cfg), out, N, seed=5, workers=1, splits=cfg.splits)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(dataset: Path, tmp_path: Path) -> None:
    cfg = _config(**{"site-A": {"weight": 0.5}, "site-B": {"weight": 0.5}})
    again = tmp_path / "again"
    generate_dataset(us_modality(cfg), again, N, seed=5, workers=2, splits=cfg.splits)
    first, second = _files(dataset), _files(again)
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_manifest_and_lesions_validate(dataset: Path) -> None:
    manifest, lesions = load_dataset(dataset / "manifest.csv")
    assert list(manifest.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert list(lesions.columns[: len(LESION_COLUMNS)]) == list(LESION_COLUMNS)
    assert len(manifest) == N
    assert set(manifest["modality"]) == {"US"} and set(manifest["view"]) == {"US"}
    assert set(manifest["n_slices"]) == {1}
    assert set(manifest["laterality"]) <= {"L", "R"}
    assert set(manifest["annotation"]) <= {"full", "weak", "none"}
    # every nodule image has one lesion row of the matching class, normal images none
    expect = {"cancer": "malignant", "benign": "benign"}
    for _, row in manifest.iterrows():
        les = lesions[lesions.image_id == row["image_id"]]
        if row["breast_label"] == "normal":
            assert les.empty
        else:
            assert list(les["lesion_class"]) == [expect[row["breast_label"]]]
            assert (dataset / les["mask_path"].iloc[0]).is_file()
    # the independent site is test only; a patient's images share one split
    assert set(manifest.loc[manifest.site == "site-B", "split"]) <= {"test"}
    assert manifest.groupby("patient_id")["split"].nunique().max() == 1


def test_dicom_sop_class_and_photometric_per_site(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv")
    assert set(manifest["site"]) == {"site-A", "site-B"}
    for _, row in manifest.iterrows():
        ds = pydicom.dcmread(dataset / row["path"])
        assert ds.SOPClassUID == SOP_US
        assert ds.Modality == "US"
        expected = "RGB" if row["site"] == "site-B" else "MONOCHROME2"
        assert ds.PhotometricInterpretation == expected
        px = ds.pixel_array
        assert px.dtype == np.uint8 and px.shape[:2] == (row["rows"], row["columns"])
        assert px.ndim == (3 if expected == "RGB" else 2)
        assert ds.PatientID == row["patient_id"]  # pseudonymous only
        region = ds.SequenceOfUltrasoundRegions[0]  # the B-mode field, not the whole screen
        assert (region.RegionLocationMinX0, region.RegionLocationMinY0) == (row["field_left"], row["field_top"])
        assert region.RegionLocationMaxY1 == row["field_top"] + row["field_rows"] - 1
        assert region.PhysicalDeltaX == pytest.approx(row["spacing"] / 10, rel=1e-3)


def test_box_contains_the_nodule(dataset: Path) -> None:
    manifest = pd.read_csv(dataset / "manifest.csv")
    lesions = pd.read_csv(dataset / "lesions.csv")
    assert len(lesions) > 0
    for _, les in lesions.iterrows():
        mask = np.array(Image.open(dataset / les["mask_path"])) > 0
        row = manifest[manifest.image_id == les["image_id"]].iloc[0]
        assert mask.shape == (row["rows"], row["columns"])
        x, y, w, h = (int(v) for v in les[["x", "y", "w", "h"]])
        inside = np.zeros_like(mask)
        inside[y : y + h, x : x + w] = True
        assert mask.any() and not (mask & ~inside).any()
        assert mask[y : y + h, x : x + w].mean() > 0.4  # tight box, not a loose one
        # the nodule lies in the B-mode field and is darker than its surroundings
        assert row["field_top"] <= y and y + h <= row["field_top"] + row["field_rows"]
        img = pydicom.dcmread(dataset / row["path"]).pixel_array
        grey = img[..., 0] if img.ndim == 3 else img
        if les["birads_echo"] != "isoechoic":
            assert les["nodule_contrast"] < 0
            assert grey[mask].mean() < grey[y : y + h, x : x + w][~mask[y : y + h, x : x + w]].mean() + 10


def test_malignant_taller_than_wide_more_often() -> None:
    def fraction(kind: str) -> float:
        rng = rng_for(0, 1 if kind == "malignant" else 2)
        taller = []
        for _ in range(100):
            _, shape = make_nodule(kind, rng, px_per_mm=2.0)
            _, _, w, h = mask_bbox(shape.mask)
            taller.append(h > w)
        return float(np.mean(taller))

    mal, ben = fraction("malignant"), fraction("benign")
    assert mal > ben + 0.25, (mal, ben)
    assert 0.0 < ben < 0.35 and 0.35 < mal < 0.9  # overlap: neither class is textbook every time


def _render(cfg: USSynthConfig, n: int, seed: int) -> list:
    out = []
    for i in range(n):
        plan = image_plan(cfg, seed, i)
        out.append((plan, render_image(cfg, plan, seed, i, f"t-{i}")))
    return out


def test_posterior_darker_below_malignant() -> None:
    means = {}
    for kind in ("malignant", "benign"):
        mix = {"malignant": float(kind == "malignant"), "benign": float(kind == "benign"), "normal": 0.0}
        cfg = _config(**{"site-A": {"weight": 1.0, "class_mix": mix}, "site-B": {"weight": 0.0}})
        vals = []
        for _, im in _render(cfg, 16, seed=11):
            top, left, _, _ = im.field
            x, y, w, h = mask_bbox(im.mask)
            vals.append(posterior_contrast(im.field_grey, (x - left, y - top, w, h)))
        means[kind] = float(np.mean(vals))
    assert means["malignant"] < means["benign"] - 5, means


def test_sites_differ_in_speckle_and_intensity() -> None:
    stats = {}
    for site in ("site-A", "site-B"):
        other = "site-B" if site == "site-A" else "site-A"
        cfg = _config(**{site: {"weight": 1.0}, other: {"weight": 0.0}})
        ims = [im for _, im in _render(cfg, 6, seed=3)]
        corr = np.array([speckle_correlation(im.field_grey) for im in ims])
        stats[site] = (corr[:, 1].mean(), np.mean([im.field_grey.std() for im in ims]), ims[0].pixels.shape)
    assert stats["site-B"][0] > stats["site-A"][0] + 0.06  # coarser axial speckle at the lower frequency
    assert stats["site-B"][1] > stats["site-A"][1] + 5  # narrower dynamic range: more contrast
    assert stats["site-A"][2] != stats["site-B"][2]


def test_calipers_at_similar_rates_in_both_classes() -> None:
    cfg = USSynthConfig()
    flags: dict[str, list[bool]] = {"malignant": [], "benign": []}
    for plan, im in _render(cfg, 80, seed=7):
        if plan["kind"]:
            flags[plan["kind"]].append(im.clutter["calipers"])
            # the overlays do not see the class: the same image with the other class has the same clutter
            if len(flags[plan["kind"]]) <= 3:
                swapped = dict(plan, kind="benign" if plan["kind"] == "malignant" else "malignant")
                index = plan["patient_index"] + plan["plane"]
                assert render_image(cfg, swapped, 7, index, f"t-{index}").clutter == im.clutter
    rates = {k: float(np.mean(v)) for k, v in flags.items()}
    assert min(len(v) for v in flags.values()) >= 15
    assert abs(rates["malignant"] - rates["benign"]) < 0.25, rates
    assert all(0.15 < r < 0.7 for r in rates.values()), rates


def test_a_site_override_keeps_the_other_settings() -> None:
    from breastssl.config import load_config

    cfg = load_config(USSynthConfig, overrides=["sites.site-B.rgb=false", "separation=0.5"])
    assert set(cfg.sites) == {"site-A", "site-B"}
    assert (
        cfg.sites["site-B"].rgb is False
        and cfg.sites["site-B"].frequency_mhz == USSynthConfig().sites["site-B"].frequency_mhz
    )
    assert cfg.sites["site-A"] == USSynthConfig().sites["site-A"]
