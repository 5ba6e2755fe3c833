"""self_training with the bilateral model: one-step contract, stage 1, the mixed loss, a tiny fit with mining."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import torch
from selftrain_fixtures import lesion_pairs

from breastssl.data.mammo_pairs import PairArrays
from breastssl.models import create_model
from breastssl.run.self_training import RunSpec, run_self_training
from breastssl.strategies import create_strategy
from breastssl.strategies.self_training import SelfTraining, SelfTrainingConfig


def _batch(n: int = 6, size: int = 16) -> dict[str, torch.Tensor]:
    """Two full (one with a lesion), one weak TP (soft map), one FP, one FN, one unused."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(n, 1, size, size)
    mask[0, :, 4:9, 5:10] = 1.0
    mask[2, :, 3:8, 3:8] = 0.6
    return {
        "image": torch.rand(n, 1, size, size, generator=g),
        "aux": torch.rand(n, 1, size, size, generator=g),
        "mask": mask,
        "label": torch.tensor([1.0, 0.0, 0.97, 0.02, 0.96, 0.5]),
        "full": torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0]),
        "weak_seg": torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0, 0.0]),
        "weak_cls": torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, 0.0]),
    }


def test_bilateral_one_step_contract_and_cls_group():
    torch.manual_seed(0)
    model = create_model("bilateral_two_view", backbone="tiny", width=4, decoder_width=16)
    assert "cls_head" in model.parameter_groups()
    strategy = create_strategy("self_training", model, None, SelfTrainingConfig())
    parts = strategy.loss(_batch(), step=0)
    loss_parts = [k for k in parts if k.startswith("loss_")]
    assert set(loss_parts) == {"loss_sup_seg", "loss_sup_cls", "loss_weak_seg", "loss_weak_cls"}
    assert math.isfinite(parts["loss"].item())
    torch.testing.assert_close(parts["loss"], sum(parts[k] for k in loss_parts))
    params = [p for p in model.parameters() if p.requires_grad]
    for key in loss_parts:
        grads = torch.autograd.grad(parts[key], params, retain_graph=True, allow_unused=True)
        assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, key
    # the fusion layers see the contralateral image
    grads = torch.autograd.grad(parts["loss"], list(model.fusion.parameters()), retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)


def test_stage1_trains_only_the_full_segmentation_term():
    model = create_model("bilateral_two_view", backbone="tiny", width=4, decoder_width=16)
    strategy = SelfTraining(model, None, SelfTrainingConfig(stage1_epochs=5))
    strategy.steps_per_epoch = 2  # stage 1 = steps 0..9
    parts = strategy.loss(_batch(), step=3)
    assert parts["loss_sup_cls"].item() == 0 and parts["loss_weak_seg"].item() == 0
    torch.testing.assert_close(parts["loss"], parts["loss_sup_seg"])
    assert strategy.loss(_batch(), step=10)["loss_weak_cls"].item() > 0


def _pairs(n: int = 24, size: int = 16) -> PairArrays:
    return lesion_pairs(n, size)


def test_tiny_fit_mines_logs_counts_and_reuses_a_finished_run(tmp_path):
    pairs = _pairs()
    y = np.where(pairs.table["has_lesion"], 0.97, 0.03)
    cfg = SelfTrainingConfig(stage1_epochs=2, rounds=1, round_epochs=2, p0_every=1)
    cfg.crf.backend = "numpy"
    spec = RunSpec(
        "t", np.arange(8), np.arange(8, 24), cfg, steps_per_epoch=2, batch_size=6,
        model={"backbone": "tiny", "width": 4, "decoder_width": 16},
    )  # fmt: skip
    res = run_self_training(spec, pairs, y, pairs.subset(np.arange(8)), tmp_path / "run")
    assert [h["p0"] for h in res["mining"]] == [0.95, 0.85]
    h = res["mining"][0]
    assert h["TP"] + h["FP"] + h["FN"] + h["TN"] + h["unsure"] == 16
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"n_tp", "n_fp", "n_fn", "n_tn", "p0"} <= set(logged[-1])
    assert set(res["sens"]) == {"0.1", "0.2", "0.5", "1"} and res["steps"] == 8
    again = run_self_training(spec, pairs, y, pairs.subset(np.arange(8)), tmp_path / "run")
    assert again == json.loads(json.dumps(res))

    # `breastssl predict --modality mg` with the run's checkpoint: maps, CRF masks, regions and scores
    from breastssl.cli import main

    imgs = []
    for k in range(2):
        imgs.append(tmp_path / f"img{k}.npy")
        np.save(imgs[-1], pairs.images[k, 0])
    ckpt = sorted((tmp_path / "run" / "checkpoints").glob("*.pt"))[-1]
    out = tmp_path / "pred"
    assert main(["predict", "--modality", "mg", "--model", str(ckpt), *map(str, imgs), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert set(df["image"]) == set(map(str, imgs)) and df["image_score"].between(0, 1).all()
    for k in range(2):
        prob = np.load(out / f"img{k}_prob.npy")
        assert prob.shape == pairs.images.shape[-2:] and (out / f"img{k}_mask.png").is_file()
    assert main(["predict", "--modality", "mg", "--model", str(tmp_path / "nope.pt"), str(imgs[0])]) == 2
