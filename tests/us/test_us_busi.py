"""`experiment us-mean-teacher` on a BUSI-layout folder (ingested by the BUSI adapter), as a user with BUSI runs it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from breastssl.cli import main
from breastssl.commands.ingest import run_ingest


def _busi(root, n_per_class: int = 8) -> None:
    """Dataset_BUSI_with_GT/{benign,malignant,normal}/NAME (k).png + NAME (k)_mask.png, sizes differing as in BUSI."""
    rng = np.random.default_rng(0)
    base = root / "Dataset_BUSI_with_GT"
    for cls in ("benign", "malignant", "normal"):
        (base / cls).mkdir(parents=True)
        for k in range(1, n_per_class + 1):
            h, w = 60 + 4 * k, 80 + 2 * k
            img = rng.normal(120, 20, (h, w))
            mask = np.zeros((h, w), np.uint8)
            if cls != "normal":
                yy, xx = np.mgrid[:h, :w]
                inside = ((yy - h / 2) / 10) ** 2 + ((xx - w / 2) / (8 if cls == "benign" else 12)) ** 2 < 1
                img[inside] = 40 if cls == "malignant" else 70
                mask[inside] = 255
            PILImage.fromarray(img.clip(0, 255).astype(np.uint8)).save(base / cls / f"{cls} ({k}).png")
            PILImage.fromarray(mask).save(base / cls / f"{cls} ({k})_mask.png")


def _args(out, manifest, *extra: str) -> list[str]:
    sets = [f"out_dir={out}", f"manifest={manifest}", "detector.steps=3", "detector.freeze_steps=1",
            "recognition.max_steps=4", "recognition.eval_every=2", "recognition.batch_size=4", "recognition.width=4",
            "recognition.crop_size=16", "recognition.min_score=0", "seeds=[0]", *extra]  # fmt: skip
    return ["experiment", "us-mean-teacher", *[a for s in sets for a in ("--set", s)]]


def test_busi_manifest_runs_with_a_basic_fraction(tmp_path):
    _busi(tmp_path / "busi")
    manifest = tmp_path / "ingested" / "manifest.csv"
    run_ingest("busi", tmp_path / "busi", manifest)
    # every BUSI image has a mask: without basic_fraction there is no unlabelled (extended) set to learn from
    assert main(_args(tmp_path / "no_fraction", manifest)) == 2
    assert not (tmp_path / "no_fraction").exists()  # nothing written
    out = tmp_path / "exp"
    assert main(_args(out, manifest, "basic_fraction=0.3")) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {r["arm"] for r in metrics["classification"]} == {"semi", "sup_basic", "sup_all"}
    runs = {r["arm"]: r for r in metrics["runs"]}
    assert runs["semi"]["n_unlabelled"] > 0 and runs["sup_all"]["n_labelled"] > runs["sup_basic"]["n_labelled"]
    assert all(k.startswith("test") for k in metrics["detection"] if k not in {"basic", "extended", "val"})


@pytest.fixture(autouse=True)
def _threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
