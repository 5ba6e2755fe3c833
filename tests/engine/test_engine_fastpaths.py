"""The loop's fast-path options: off by default, validated, and training the same model when on."""

from __future__ import annotations

import json

import pytest
import torch
from engine_toys import SquaresDataset, SupervisedBCE
from pydantic import ValidationError

from breastssl.engine import TrainConfig, fit
from breastssl.engine import loop as engine_loop
from breastssl.engine.loop import channels_last_batch, channels_last_modules
from breastssl.models import create_model
from breastssl.models.ema import EMA

CL = torch.channels_last


def make_cfg(tmp_path, name: str = "run", **kw) -> TrainConfig:
    base = {"steps": 4, "batch_size": 8, "out_dir": str(tmp_path / name), "progress": False, "tensorboard": False}
    return TrainConfig.model_validate({**base, "log_every": 1, **kw})


def losses(cfg: TrainConfig) -> list[float]:
    with open(f"{cfg.out_dir}/metrics.jsonl") as fh:
        return [json.loads(line)["loss"] for line in fh]


def tiny(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("tiny_cnn", width=4, decoder_width=8)


class RecordingBCE(SupervisedBCE):
    """SupervisedBCE that records the type of the module it calls at every step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__(model)
        self.called: list[type] = []

    def loss(self, batch, step):
        self.called.append(type(self.model))
        return super().loss(batch, step)


def test_fast_paths_are_off_by_default_and_validated():
    cfg = TrainConfig()
    assert cfg.channels_last is False and cfg.compile is False and cfg.amp == "off"
    with pytest.raises(ValidationError):
        TrainConfig(channels_last="sometimes")
    with pytest.raises(ValidationError):
        TrainConfig(compile_mode="max-autotune")  # unknown keys are errors


def test_channels_last_trains_the_same_model_as_contiguous(tmp_path):
    runs = {}
    for flag in (False, True):
        model = tiny()
        cfg = make_cfg(tmp_path, f"cl_{flag}", channels_last=flag, optim={"name": "adam", "lr": 0.01})
        fit(model, SupervisedBCE(model), SquaresDataset(32), cfg)
        runs[flag] = (model, losses(cfg))
    (plain, plain_losses), (cl, cl_losses) = runs[False], runs[True]
    assert cl.encoder.stages[0][0].weight.is_contiguous(memory_format=CL)
    assert plain.encoder.stages[0][0].weight.is_contiguous()
    torch.testing.assert_close(torch.tensor(cl_losses), torch.tensor(plain_losses), rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(plain.state_dict().items(), cl.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=name)


def test_channels_last_converts_the_strategys_modules_and_4d_float_tensors():
    student, teacher = tiny(0), tiny(1)

    class Holder:
        def __init__(self) -> None:
            self.student, self.teacher, self.ema = student, teacher, EMA(student, 0.9)

    holder = Holder()
    channels_last_modules(student, holder)
    for m in (student, teacher, holder.ema.module):
        assert m.encoder.stages[1][1][0].weight.is_contiguous(memory_format=CL)
    batch = {"image": torch.rand(2, 3, 8, 6), "label": torch.ones(2), "idx": torch.zeros(2, 3, 8, 6, dtype=torch.long)}
    out = channels_last_batch({"pair": [batch, (batch["image"],)], "n": 3})
    assert out["pair"][0]["image"].is_contiguous(memory_format=CL) and not out["pair"][0]["image"].is_contiguous()
    assert out["pair"][1][0].is_contiguous(memory_format=CL) and isinstance(out["pair"][1], tuple)
    assert out["pair"][0]["idx"].is_contiguous() and out["pair"][0]["label"] is batch["label"] and out["n"] == 3
    torch.testing.assert_close(out["pair"][0]["image"], batch["image"])


def test_compile_is_off_by_default_and_wraps_the_student_only_for_the_run(tmp_path, monkeypatch):
    model = tiny()
    strategy = RecordingBCE(model)
    fit(model, strategy, SquaresDataset(32), make_cfg(tmp_path, "plain"))
    assert set(strategy.called) == {type(model)}

    monkeypatch.setattr(engine_loop, "COMPILE_OPTIONS", {"backend": "eager"})  # no C++ toolchain needed
    compiled_model = tiny()
    compiled = RecordingBCE(compiled_model)
    cfg = make_cfg(tmp_path, "compiled", compile=True)
    fit(compiled_model, compiled, SquaresDataset(32), cfg)
    assert all(t is not type(model) for t in compiled.called), "the strategy called the plain student"
    assert compiled.model is compiled_model  # the caller gets its strategy back holding the plain model
    torch.testing.assert_close(torch.tensor(losses(cfg)), torch.tensor(losses(make_cfg(tmp_path, "plain"))))


def test_compile_warns_and_skips_when_the_strategy_does_not_hold_the_student(tmp_path, monkeypatch):
    monkeypatch.setattr(engine_loop, "COMPILE_OPTIONS", {"backend": "eager"})
    model = tiny()

    class Indirect:
        def __init__(self) -> None:
            self.models = [model]  # the student, but not as an attribute of its own

        def loss(self, batch, step):
            return SupervisedBCE(self.models[0]).loss(batch, step)

    with pytest.warns(UserWarning, match="not compiling"):
        fit(model, Indirect(), SquaresDataset(32), make_cfg(tmp_path, compile=True, steps=1))
