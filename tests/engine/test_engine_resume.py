"""A run killed mid-epoch and resumed from its checkpoint ends bit-identical to an uninterrupted one."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toys import SquaresDataset, SupervisedBCE

from breastssl.engine import TrainConfig, fit, list_checkpoints, load_checkpoint
from breastssl.errors import UserError
from breastssl.models import create_model


def config(out_dir) -> TrainConfig:
    # 40 samples / batch 8 = 5 batches per epoch: the kill at step 7 is mid-epoch 1, the checkpoint
    # at step 6 is at (epoch 1, batch 1), and the run crosses another epoch boundary after resuming.
    return TrainConfig(
        steps=12,
        batch_size=8,
        optim={"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        schedule={"name": "cosine", "warmup_steps": 3},
        clip_grad_norm=1.0,
        ema_decay=0.9,
        ckpt_every=3,
        log_every=1,
        seed=7,
        deterministic=True,
        out_dir=str(out_dir),
        progress=False,
        tensorboard=False,
    )


def new_model(seed: int):
    torch.manual_seed(seed)  # a different initialisation each time: the checkpoint must override it
    return create_model("tiny_cnn", width=4, decoder_width=8, dropout=0.3)  # dropout: RNG must resume too


def test_killed_and_resumed_run_matches_an_uninterrupted_one(tmp_path):
    data = SquaresDataset(40)
    model = new_model(0)
    whole = fit(model, SupervisedBCE(model), data, config(tmp_path / "whole"))

    killed = new_model(0)
    with pytest.raises(KeyboardInterrupt):
        fit(killed, SupervisedBCE(killed, fail_at=7), data, config(tmp_path / "killed"))
    ckpt = load_checkpoint(list_checkpoints(tmp_path / "killed")[-1])
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_index"]) == (6, 1, 1)

    resumed = new_model(1)
    result = fit(resumed, SupervisedBCE(resumed), data, config(tmp_path / "killed"))
    assert result.step == 12
    for name, value in model.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    for name, value in whole.ema.module.state_dict().items():
        assert torch.equal(value, result.ema.module.state_dict()[name]), f"ema {name}"

    # the metrics file holds each step once, with the same values as the uninterrupted run
    def losses(run):
        return [(r["step"], r["loss"]) for r in map(json.loads, open(tmp_path / run / "metrics.jsonl"))]

    assert losses("killed") == losses("whole")


def test_a_truncated_checkpoint_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "step_00000001.pt"
    path.write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(UserError, match="step_00000001.pt cannot be loaded"):
        load_checkpoint(path)
