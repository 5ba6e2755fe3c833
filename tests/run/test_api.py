"""The Python API (``breastssl.api``) is the run layer the CLI wraps: one DBT and one CoMoTo-teacher run through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from breastssl import api
from breastssl.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY = {"data.image_size": [32, 24], "train.steps": 2, "train.batch_size": 8, "train.ckpt_every": 2,
        "train.progress": False, "train.tensorboard": False, "data.test_split": "val"}  # fmt: skip


@pytest.fixture(scope="module")
def dbt(tmp_path_factory) -> Path:
    from breastssl.commands.synth import run_synth

    root = tmp_path_factory.mktemp("api") / "dbt"
    run_synth("dbt", root, n=8, seed=0, fmt="npy", quiet=True)
    return root


def test_config_dry_run_train_load_predict_evaluate(dbt, tmp_path):
    out = tmp_path / "run"
    cfg = api.run_config(CONFIGS / "dbt_selectivekd_demo.yaml",
                         {**TINY, "data.manifest": str(dbt / "manifest.csv"), "train.out_dir": str(out)})  # fmt: skip
    assert cfg.family == "dbt" and cfg.train.steps == 2
    dry = api.dry_run(cfg)
    assert dry["strategy"] == "supervised" and dry["first_loss"]["loss"] > 0 and not out.exists()
    summary = api.train(cfg)
    assert summary["steps"] == 2 and (out / "model.json").is_file()

    run = api.load_run(out)
    slices = np.random.default_rng(0).random((3, 40, 30)).astype(np.float32)  # resized to the run's 32×24
    pred = api.predict_arrays(run, slices)
    assert pred["score"].shape == (3,) and pred["map"].shape == (3, 32, 24)
    assert ((pred["score"] > 0) & (pred["score"] < 1)).all()

    res = api.evaluate([out / "predictions_breast.csv"], dbt / "manifest.csv", tmp_path / "eval", level="breast",
                       split="val")  # fmt: skip
    assert (tmp_path / "eval" / "metrics.json").is_file() and res["models"]


def test_overrides_are_checked(dbt):
    with pytest.raises(ConfigError, match="did you mean"):
        api.run_config(CONFIGS / "dbt_selectivekd_demo.yaml", ["train.stepz=3"])
    with pytest.raises(ConfigError, match="unknown strategy"):
        api.run_config(None, {"strategy.name": "selectve_kd"})
