"""The mammography recipe's ``data.cache`` (issue 18): pairs read from a `breastssl cache` on demand equal the
in-memory pairs (to float16), compact float16 items become the float32 batch on the device, and training reads
the cache; a cache of another kind is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from mammo_fixtures import synth_mammo_with_labels
from torch.utils.data import default_collate

from breastssl.cli import main
from breastssl.data.cache import CacheReader, build_cache
from breastssl.data.mammo_cache import Float32Pairs, load_pairs_cached
from breastssl.data.mammo_pairs import load_pairs
from breastssl.data.schema import load_dataset
from breastssl.run.self_training import self_training_data

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "configs" / "mammo_self_training_run_demo.yaml"
SIZE = (48, 32)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = synth_mammo_with_labels(tmp_path_factory.mktemp("mammo_cache") / "data")
    build_cache(root / "manifest.csv", root / "cache", SIZE, workers=1)
    return root


def test_cached_pairs_equal_the_in_memory_pairs(data):
    manifest, lesions = load_dataset(data / "manifest.csv", data / "lesions.csv")
    masked = lesions[lesions["mask_path"].notna()]
    dense = load_pairs(manifest, masked, data, SIZE)
    cached = load_pairs_cached(manifest, masked, data, SIZE, CacheReader(data / "cache"))
    assert cached.images.shape == dense.images.shape and len(cached.masks) == len(dense.masks)
    pd.testing.assert_frame_equal(cached.table, dense.table)
    assert dense.table["has_lesion"].any() and dense.table["paired"].all()
    np.testing.assert_array_equal(cached.masks[:], dense.masks)  # the masks through the cache's geometry
    np.testing.assert_allclose(cached.images[:], dense.images, atol=1e-3, rtol=0)  # float16 storage
    np.testing.assert_allclose(cached.aux[:], dense.aux, atol=1e-3, rtol=0)
    np.testing.assert_allclose(cached.images[:, 0], dense.images[:, 0], atol=1e-3, rtol=0)
    sub, dsub = cached.subset([5, 2]), dense.subset([5, 2])
    np.testing.assert_array_equal(sub.masks[:], dsub.masks)
    np.testing.assert_allclose(sub.aux[1], dsub.aux[1], atol=1e-3, rtol=0)

    # compact items: float16 from the cache, made float32 on the device: the float32 items exactly
    y = np.full(len(cached.table), 0.9)
    full, weak = np.arange(4), np.arange(4, len(cached.table))
    plain, compact = (self_training_data(cached, full, weak, y, c) for c in (False, True))
    items = [compact[i] for i in range(6)]
    assert items[0]["image"].dtype == items[0]["aux"].dtype == items[0]["mask"].dtype == torch.float16
    got, ref = Float32Pairs()(default_collate(items), 0), default_collate([plain[i] for i in range(6)])
    for key in ("image", "aux", "mask"):
        assert got[key].dtype == torch.float32 and torch.equal(got[key], ref[key]), key


def _train(data: Path, out: Path, *extra: str) -> int:
    sets = [f"data.manifest={data / 'manifest.csv'}", f"data.labels={data / 'labels.csv'}", f"train.out_dir={out}",
            f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "data.steps_per_epoch=2", "strategy.stage1_epochs=1",
            "strategy.rounds=1", "strategy.round_epochs=2", "strategy.p0_every=1", "strategy.crf.backend=numpy",
            "strategy.crf.workers=1", "train.batch_size=6", "train.progress=false", "train.tensorboard=false",
            *extra]  # fmt: skip
    return main(["train", "-c", str(DEMO), *[a for s in sets for a in ("--set", s)]])


def test_training_reads_the_cache_and_refuses_another_kind(data, tmp_path, capsys):
    assert _train(data, tmp_path / "run", f"data.cache={data / 'cache'}") == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["items"].startswith("compact") and metrics["steps"] > 0
    other = tmp_path / "dbt_mode"
    build_cache(data / "manifest.csv", other, SIZE, workers=1, mode="dbt")
    capsys.readouterr()
    assert _train(data, tmp_path / "bad", f"data.cache={other}") == 2
    said = capsys.readouterr()
    assert "mode 'dbt'" in said.out + said.err and "breastssl cache --size 48 32" in said.out + said.err
    assert not (tmp_path / "bad").exists()
