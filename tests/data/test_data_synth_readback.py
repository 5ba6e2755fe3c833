"""The synthetic generator's DICOM (and .npy) output read back through the readers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastssl.commands.synth import run_synth
from breastssl.data.dicom import read_image
from breastssl.data.preprocess import prepare_row


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    for modality, n in (("dbt", 1), ("mammo", 1), ("us", 4)):
        run_synth(modality, root / modality, n, 0, "dicom", workers=1, quiet=True)
    run_synth("dbt", root / "dbt_npy", 1, 0, "npy", workers=1, quiet=True)
    return root


@pytest.mark.parametrize("modality", ["dbt", "mammo", "us"])
def test_synthetic_dicom_reads_back(synth_root: Path, modality: str) -> None:
    manifest = pd.read_csv(synth_root / modality / "manifest.csv")
    for row in manifest.to_dict("records"):
        im = read_image(synth_root / modality / row["path"], row)
        assert im.meta["modality"] == row["modality"]
        assert im.meta["laterality"] == row["laterality"] and im.meta["view"] == row["view"]
        assert np.isfinite(im.pixels).all() and im.pixels.min() >= 0.0 and im.pixels.max() <= 1.0
        if row["modality"] == "DBT":
            assert im.pixels.shape == (row["n_slices"], row["rows"], row["columns"])
        if row["modality"] in ("MG", "DBT"):
            assert im.meta["laterality_source"] == "tag"  # the image agrees with the tag
            assert im.meta["spacing"][0] == pytest.approx(row["spacing"])
            # bright = dense: the breast (chest-wall third) is brighter than the far third
            plane = im.pixels if im.pixels.ndim == 2 else im.pixels.mean(axis=0)
            near, far = (plane[:, :10], plane[:, -10:]) if row["laterality"] == "L" else (plane[:, -10:], plane[:, :10])
            assert near.mean() > far.mean()


def test_npy_fast_path_matches_dicom(synth_root: Path) -> None:
    dcm = pd.read_csv(synth_root / "dbt" / "manifest.csv").iloc[0].to_dict()
    npy = pd.read_csv(synth_root / "dbt_npy" / "manifest.csv").iloc[0].to_dict()
    a = read_image(synth_root / "dbt" / dcm["path"], dcm).pixels
    b = read_image(synth_root / "dbt_npy" / npy["path"], npy).pixels
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_prepare_synthetic_rows_chest_wall_left(synth_root: Path) -> None:
    manifest = pd.read_csv(synth_root / "mammo" / "manifest.csv")
    for row in manifest.to_dict("records"):
        arr, geo, _ = prepare_row(row, synth_root / "mammo", (48, 32))
        assert arr.shape == (48, 32)
        assert geo.flip.horizontal == (row["laterality"] == "R")
        assert arr[:, :8].mean() > arr[:, -8:].mean()
