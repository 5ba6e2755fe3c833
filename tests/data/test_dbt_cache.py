"""The DBT recipe reads its training slices from a `breastssl cache --mode dbt` folder (issue 18): the same values as
decoding the stack files (to the storage precision), one slice at a time; a cache of another kind is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from breastssl.cli import main
from breastssl.data.cache import CacheReader, build_cache
from breastssl.data.dbt_slices import StackStore, load_stack
from breastssl.data.synth.run import run_synth

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "dbt_selectivekd_demo.yaml"
SIZE = (32, 24)


@pytest.fixture(scope="module")
def dbt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dbt_cache") / "dbt"
    run_synth("dbt", root, n=4, seed=0, fmt="npy", quiet=True)
    return root


@pytest.mark.parametrize(("dtype", "atol"), [("float16", 1e-3), ("uint8", 0.5 / 255 + 1e-6)])
def test_dbt_mode_holds_load_stack_arrays_and_the_store_reads_slices(dbt, tmp_path, dtype, atol):
    cache = tmp_path / "cache"
    build_cache(dbt / "manifest.csv", cache, SIZE, workers=1, dtype=dtype, mode="dbt")
    reader = CacheReader(cache)
    assert reader.mode == "dbt" and reader.params["size"] == list(SIZE) and reader.params["crop"] is False
    manifest = pd.read_csv(dbt / "manifest.csv", dtype={"image_id": str})
    store = StackStore(manifest, dbt, SIZE, cache=reader)
    plain = StackStore(manifest, dbt, SIZE)
    for row in manifest.head(3).to_dict("records"):
        ref = load_stack(row, dbt, SIZE)
        image_id = str(row["image_id"])
        for z in (0, ref.shape[0] // 2, ref.shape[0] - 1):
            got = store.slice(image_id, z)
            assert got.dtype == np.float32 and got.shape == SIZE
            np.testing.assert_allclose(got, ref[z], atol=atol, rtol=0)
            np.testing.assert_array_equal(plain.slice(image_id, z), ref[z])  # without a cache: the decoded stack
        np.testing.assert_allclose(store.stack(image_id), ref, atol=atol, rtol=0)


def _train(dbt: Path, out: Path, *extra: str) -> int:
    sets = [f"data.manifest={dbt / 'manifest.csv'}", f"data.image_size=[{SIZE[0]},{SIZE[1]}]", "train.steps=2",
            "train.batch_size=4", "data.test_split=train", "train.progress=false", "train.tensorboard=false",
            f"train.out_dir={out}", "model.decoder_width=8", *extra]  # fmt: skip
    return main(["train", "--config", str(CONFIG), *[a for s in sets for a in ("--set", s)]])


def test_training_reads_the_cache_and_refuses_another_kind(dbt, tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["cache", "-m", str(dbt / "manifest.csv"), "-o", str(cache), "--size", *map(str, SIZE),
                 "--mode", "dbt", "--workers", "1"]) == 0  # fmt: skip
    assert _train(dbt, tmp_path / "run", f"data.cache={cache}") == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["steps"] == 2
    # a cache of the mammography preprocessing (oriented, cropped), or at another size, is a config error
    other = tmp_path / "prepare"
    build_cache(dbt / "manifest.csv", other, SIZE, workers=1, mode="prepare")
    capsys.readouterr()
    assert _train(dbt, tmp_path / "bad1", f"data.cache={other}") == 2
    said = capsys.readouterr()
    assert "mode 'prepare'" in said.out + said.err and "--mode dbt" in said.out + said.err
    assert _train(dbt, tmp_path / "bad2", f"data.cache={cache}", "data.image_size=[40,32]") == 2
    said = capsys.readouterr()
    assert "size [32, 24]" in said.out + said.err
    assert not (tmp_path / "bad1").exists() and not (tmp_path / "bad2").exists()


def test_a_cache_missing_manifest_rows_is_a_data_error(dbt, tmp_path, capsys):
    part = pd.read_csv(dbt / "manifest.csv").head(2)
    part.to_csv(dbt / "manifest_part.csv", index=False)
    cache = tmp_path / "cache"
    build_cache(dbt / "manifest_part.csv", cache, SIZE, workers=1, mode="dbt")
    capsys.readouterr()
    assert _train(dbt, tmp_path / "run", f"data.cache={cache}") == 2
    said = capsys.readouterr()
    assert "not in the cache" in said.out + said.err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_compact_items_hold_the_same_numbers_in_fewer_bytes(dbt, tmp_path, dtype):
    """SliceDataset(compact=True), the device path's items: float16 images from a float16 cache (uint8: float32)
    and uint8 masks; the device transform's float32 batch equals the plain items exactly when no op fires."""
    import torch
    from torch.utils.data import default_collate

    from breastssl.data.dbt_slices import SliceDataset
    from breastssl.data.device_augment import BatchAugment
    from breastssl.data.transforms import AugmentConfig

    cache = tmp_path / "cache"
    build_cache(dbt / "manifest.csv", cache, SIZE, workers=1, dtype=dtype, mode="dbt")
    manifest = pd.read_csv(dbt / "manifest.csv", dtype={"image_id": str})
    lesions = pd.read_csv(dbt / "lesions.csv", dtype={"image_id": str})
    store = StackStore(manifest, dbt, SIZE, lesions, 1, cache=CacheReader(cache))
    les = lesions[lesions["lesion_class"] == "malignant"].iloc[0]
    table = pd.DataFrame({"image_id": [str(les["image_id"])] * 2 + [str(manifest["image_id"].iloc[0])],
                          "slice": [int(les["slice"]), 0, 1], "label": 1.0, "sup_cls": 1.0, "sup_seg": [1.0, 0.0, 0.0],
                          "kd": 0.0})  # fmt: skip
    plain, compact = SliceDataset(table, store), SliceDataset(table, store, compact=True)
    items = [compact[i] for i in range(3)]
    assert items[0]["image"].dtype == (torch.float16 if dtype == "float16" else torch.float32)
    assert items[0]["mask"].dtype == torch.uint8 and items[0]["mask"].sum() > 0  # the lesion's slice
    identity = BatchAugment(AugmentConfig(enabled=False), seed=0)
    got = identity(default_collate(items), 0)
    ref = default_collate([plain[i] for i in range(3)])
    assert got["image"].dtype == got["mask"].dtype == torch.float32
    assert torch.equal(got["image"], ref["image"]) and torch.equal(got["mask"], ref["mask"])
    with pytest.raises(ValueError, match="compact"):
        SliceDataset(table, store, AugmentConfig(), compact=True)
