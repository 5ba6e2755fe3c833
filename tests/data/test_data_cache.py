"""The preprocessing cache: identical arrays to direct reading, incremental re-runs, shards."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import breast, make_ds, save

from breastssl.cli import main
from breastssl.data.cache import CacheReader, build_cache, load_direct


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rows = []
    for k in range(4):
        lat = "LR"[k % 2]
        ds = make_ds(
            breast(side="left" if lat == "L" else "right"),
            ImageLaterality=lat,
            ViewPosition="CC",
            WindowCenter=2000,
            WindowWidth=4000,
        )
        save(ds, tmp_path / "img" / f"{k}.dcm")
        rows.append(
            {
                "image_id": f"im{k}",
                "patient_id": f"p{k}",
                "exam_id": f"e{k}",
                "laterality": lat,
                "view": "CC",
                "modality": "MG",
                "vendor": "v",
                "site": "s",
                "path": f"img/{k}.dcm",
                "n_slices": 1,
                "breast_label": "normal",
                "annotation": "weak",
                "split": "train",
            }
        )
    np.save(tmp_path / "img" / "stack.npy", np.stack([breast()] * 3))
    rows.append(
        {
            **rows[0],
            "image_id": "st",
            "patient_id": "p9",
            "modality": "DBT",
            "path": "img/stack.npy",
            "n_slices": 3,
            "window_center": 2000,
            "window_width": 4000,
        }
    )
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


def test_cache_matches_direct_and_reruns_only_changes(dataset: Path) -> None:
    out = dataset / "cache"
    stats = build_cache(dataset / "manifest.csv", out, (24, 16), workers=1)
    assert stats["built"] == 5 and stats["merged"]
    reader = CacheReader(out)
    manifest = pd.read_csv(dataset / "manifest.csv")
    for row in manifest.to_dict("records"):
        direct = load_direct(row, dataset, (24, 16))
        assert np.array_equal(reader.get(row["image_id"]), direct)
    assert reader.get("st").shape == (3, 24, 16) and reader.verify() == []
    assert build_cache(dataset / "manifest.csv", out, (24, 16), workers=1)["built"] == 0
    os.utime(dataset / "img" / "1.dcm", ns=(1, 1))  # touched, not changed: recognised by hash
    assert build_cache(dataset / "manifest.csv", out, (24, 16), workers=1)["built"] == 0
    save(
        make_ds(breast(top=3000), ImageLaterality="R", ViewPosition="CC", WindowCenter=2000, WindowWidth=4000),
        dataset / "img" / "1.dcm",
    )
    assert build_cache(dataset / "manifest.csv", out, (24, 16), workers=1)["built"] == 1
    assert build_cache(dataset / "manifest.csv", out, (20, 16), workers=1)["built"] == 5  # new parameters


def test_shards_merge_and_cli(dataset: Path, capsys: pytest.CaptureFixture) -> None:
    out = dataset / "sharded"
    args = [
        "cache",
        "--manifest",
        str(dataset / "manifest.csv"),
        "--out",
        str(out),
        "--size",
        "24",
        "16",
        "--workers",
        "1",
    ]
    assert main([*args, "--shard", "1/2"]) == 0 and not (out / "index.parquet").exists()
    assert len(CacheReader(out)) == 2  # readable while incomplete
    assert main([*args, "--shard", "0/2"]) == 0 and (out / "index.parquet").exists()
    assert len(CacheReader(out)) == 5
    assert main([*args, "--shard", "2/2"]) == 2 and "--shard" in capsys.readouterr().err
    (dataset / "img" / "2.dcm").write_bytes(b"broken")
    assert main([*args, "--shard", "0/1"]) == 2 and "2.dcm" in capsys.readouterr().err
    assert main([*args, "--shard", "0/1", "--skip-bad"]) == 0
    assert "2.dcm" in (out / "skipped-00000-of-00001.csv").read_text()


def test_a_reader_bounds_its_open_memory_maps(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A paper-scale cache holds 10⁵ arrays; the kernel allows ~65,000 maps per process: the reader keeps a bounded
    number open (the oldest closed first) and reads the same values."""
    import breastssl.data.cache as cache_mod

    out = dataset / "cache_bound"
    build_cache(dataset / "manifest.csv", out, (24, 16), workers=1)
    ids = pd.read_csv(dataset / "manifest.csv")["image_id"].astype(str).tolist()
    expected = {i: np.array(CacheReader(out).get(i)) for i in ids}
    monkeypatch.setattr(cache_mod, "MAX_OPEN_MAPS", 2)
    reader = CacheReader(out)
    for _ in range(2):
        for i in ids:
            assert np.array_equal(reader.get(i), expected[i]) and len(reader._open) <= 2
    assert reader.geometry(ids[0])["size"] == [24, 16]
