"""The training loop: it learns, stops on NaN, clips, logs, checkpoints, calls the strategy's hooks."""

from __future__ import annotations

import json
import math

import pytest
import torch
from engine_toys import LinearModel, SquaresDataset, SupervisedBCE
from torch import nn

from breastssl.config import load_config
from breastssl.engine import NonFiniteLossError, TrainConfig, fit, list_checkpoints, load_checkpoint
from breastssl.errors import ConfigError, UserError
from breastssl.models import create_model


def make_cfg(tmp_path, **kw) -> TrainConfig:
    base = {"steps": 6, "batch_size": 8, "out_dir": str(tmp_path / "run"), "progress": False, "tensorboard": False}
    return TrainConfig.model_validate({**base, **kw})


def read_metrics(cfg: TrainConfig) -> list[dict]:
    with open(f"{cfg.out_dir}/metrics.jsonl") as fh:
        return [json.loads(line) for line in fh]


def test_supervised_toy_problem_is_learned(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny_cnn", width=4, decoder_width=8)
    data = SquaresDataset(64)
    cfg = make_cfg(tmp_path, steps=40, batch_size=16, log_every=1, optim={"name": "adam", "lr": 0.01})
    fit(model, SupervisedBCE(model), data, cfg)
    losses = [m["loss"] for m in read_metrics(cfg)]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    model.eval()
    with torch.no_grad():
        pred = model(data.images)["logits"] > 0
    assert (pred.float() == data.labels).float().mean() > 0.9


def test_run_dir_holds_config_metrics_tensorboard_and_last_k_checkpoints(tmp_path):
    model = LinearModel()
    cfg = make_cfg(tmp_path, steps=6, ckpt_every=2, keep_last=2, log_every=2, tensorboard=True)
    result = fit(model, SupervisedBCE(model), SquaresDataset(32), cfg)
    ckpts = list_checkpoints(cfg.out_dir)
    assert [p.name for p in ckpts] == ["step_00000004.pt", "step_00000006.pt"]
    assert result.checkpoint == ckpts[-1] and result.step == 6
    assert load_config(TrainConfig, f"{cfg.out_dir}/config.yaml") == cfg
    records = read_metrics(cfg)
    assert [r["step"] for r in records] == [2, 4, 6]
    assert {"loss", "loss_sup", "lr", "lr/model", "grad_norm", "epoch", "sec_per_step"} <= set(records[0])
    assert any(p.name.startswith("events.out.tfevents") for p in (tmp_path / "run" / "tb").iterdir())
    assert load_checkpoint(ckpts[-1])["step"] == 6


def test_non_finite_loss_stops_naming_step_and_parts(tmp_path):
    model = LinearModel()
    cfg = make_cfg(tmp_path, steps=6, ckpt_every=2)
    with pytest.raises(NonFiniteLossError, match=r"step 3 .*loss=nan.*loss_sup=.*loss_kd=nan.*step_00000002\.pt"):
        fit(model, SupervisedBCE(model, nan_at=3), SquaresDataset(32), cfg)


def test_gradient_clipping_bounds_the_update(tmp_path):
    model = LinearModel()
    before = [p.detach().clone() for p in model.parameters()]
    optim = {"name": "sgd", "lr": 1.0, "momentum": 0.0, "weight_decay": 0.0}
    cfg = make_cfg(tmp_path, steps=1, clip_grad_norm=1e-3, optim=optim, schedule={"name": "constant"})
    result = fit(model, SupervisedBCE(model), SquaresDataset(32), cfg)
    step = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)])
    assert result.metrics["grad_norm"] > 1e-2  # the unclipped norm is logged, and clipping did bite
    assert step.norm().item() == pytest.approx(1e-3, rel=1e-4)


def test_bf16_autocast_on_cpu_and_fp16_needs_cuda(tmp_path):
    model = create_model("tiny_cnn", width=4, decoder_width=8)
    result = fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path, steps=2, amp="bf16"))
    assert math.isfinite(result.metrics["loss"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="fp16 needs CUDA"):
            fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path / "b", amp="fp16"))


class HookedStrategy(SupervisedBCE):
    """Records its hooks, owns a trainable scale, and carries state through checkpoints."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.scale = nn.Parameter(torch.ones(()))
        self.rounds: list[tuple[int, int]] = []
        self.after: list[int] = []

    def loss(self, batch, step):
        parts = super().loss(batch, step)
        return {**parts, "loss": parts["loss"] * self.scale, "scale": self.scale.detach()}

    def before_round(self, round_: int) -> None:
        self.rounds.append((round_, len(self.after)))

    def after_step(self, step: int) -> None:
        self.after.append(step)

    def trainable_parameters(self):
        return {"proj": [self.scale]}

    def state_dict(self):
        return {"after": torch.tensor(self.after)}


def test_strategy_hooks_own_parameters_and_state(tmp_path):
    model = LinearModel()
    strategy = HookedStrategy(model)
    optim = {"lr": 0.1, "lr_mult": {"proj": 10.0}}
    cfg = make_cfg(tmp_path, steps=7, round_steps=3, optim=optim, log_every=7, progress=True)
    result = fit(model, strategy, SquaresDataset(32), cfg)
    assert strategy.rounds == [(0, 0), (1, 3), (2, 6)]
    assert strategy.after == list(range(7))
    assert strategy.scale.item() != 1.0  # the strategy's own parameter is trained
    assert result.metrics["lr/proj"] == pytest.approx(10 * result.metrics["lr/model"])
    assert load_checkpoint(result.checkpoint)["strategy"]["after"].tolist() == list(range(7))


def test_malformed_loss_dict_is_a_clear_error(tmp_path):
    model = LinearModel()

    class NoLoss:
        def loss(self, batch, step):
            return {"loss_sup": model(batch["image"])["logits"].mean()}

    with pytest.raises(ValueError, match="must return a dict with key 'loss'"):
        fit(model, NoLoss(), SquaresDataset(16), make_cfg(tmp_path))


def test_ema_of_the_model_is_kept_and_saved(tmp_path):
    model = LinearModel()
    result = fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path, steps=3, ema_decay=0.5))
    assert result.ema is not None and result.ema.updates == 3
    saved = load_checkpoint(result.checkpoint)["ema"]
    assert torch.equal(saved["module"]["fc.weight"], result.ema.module.fc.weight)


def test_a_fresh_run_refuses_a_directory_with_checkpoints(tmp_path):
    model = LinearModel()
    fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path, steps=2))
    with pytest.raises(UserError, match="already holds checkpoints"):
        fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path, steps=4, resume=False))
    with pytest.warns(UserWarning, match="changed train config: steps"):
        result = fit(model, SupervisedBCE(model), SquaresDataset(16), make_cfg(tmp_path, steps=4))
    # the cosine is stretched to the new end: step 3 of 4 runs at lr × 0.5(1 + cos(3π/4)), not at 0
    assert result.metrics["lr"] == pytest.approx(0.012 * 0.5 * (1 + math.cos(3 * math.pi / 4)))
    assert result.step == 4 and [p.name for p in list_checkpoints(tmp_path / "run")] == [
        "step_00000002.pt",
        "step_00000004.pt",
    ]
