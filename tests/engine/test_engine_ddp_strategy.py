"""The real DBT pipeline (`run_train`, selective_kd_weak): two gloo ranks match one process; exact resume.

Everything is the shipped code path: synthetic DBT stacks, slice roles, the teacher's sharded scoring
and threshold selection, the composed batch sampler split over ranks, seeded augmentation, the
SelectiveKD loss, DDP in the loop, checkpoints, test-split scoring and metrics.json.

One substitution, for the DDP comparison only: the student is ``tiny_cnn`` with every BatchNorm2d
replaced by GroupNorm(1, C). Under DDP each rank normalises with the statistics of its own half batch,
so a BatchNorm student on two ranks trains a different model from one process on the whole batch
(measured after 4 steps: 4.5e-2 relative L2 from the one-process weights, half of what disabling
gradient averaging gives, 8.7e-2: no tolerance separates the two), and torch's SyncBatchNorm has no
CPU implementation (and the engine no sync-BN option).
A per-sample norm makes the two runs equal up to float summation order, so the tolerance can be tight.
The teacher is the real ``tiny_cnn``: it only runs in eval mode, where BatchNorm is per-sample.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from engine_toys import free_port, rank_env
from torch import nn

import breastssl.engine.loop as engine_loop
from breastssl.commands.synth import run_synth
from breastssl.config import load_config
from breastssl.engine import cleanup_distributed, latest_checkpoint, list_checkpoints, load_checkpoint
from breastssl.models import registry
from breastssl.models.tiny_cnn import tiny_cnn
from breastssl.run.recipes.dbt import TEACHER_SCORES, RunConfig
from breastssl.run.train import run_train
from breastssl.strategies import strategy_class

WORLD = 2
STUDENT = "selective_kd_weak"
GN_MODEL = "tiny_cnn_groupnorm_test"  # registered only while the DDP test runs (not seen by the model contract tests)
# SGD, not the demo's AdamW: Adam divides each gradient by its running RMS, so a DDP bug that scales the
# gradient (summed instead of averaged over ranks) would barely move the weights; with SGD it doubles a step.
SGD = ["train.optim={name: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0001}", "train.schedule={name: constant}"]
# float32 with a different all-reduce summation order: measured max |Δ| 6e-8 on weights of scale ~5.
# A broken DDP (no gradient averaging) is 5e-2 away; the last two SGD steps moved the weights by 1e-1.
RTOL, ATOL = 1e-5, 1e-6


def groupnorm_tiny_cnn(**kwargs) -> nn.Module:
    """``tiny_cnn`` with per-sample normalisation: its output for a slice does not depend on the batch."""
    model = tiny_cnn(**kwargs)
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, name, nn.GroupNorm(1, child.num_features))
    return model


def register_groupnorm_model() -> None:
    registry._REGISTRY.setdefault(GN_MODEL, registry.ModelEntry(GN_MODEL, groupnorm_tiny_cnn))


def run_config(data: Path, out_dir: Path, strategy: str, *overrides: str) -> RunConfig:
    """The demo config at test scale: 32×24 slices, 4 steps of 8 slices, a checkpoint every 2, augmentation on."""
    return load_config(
        RunConfig,
        "configs/dbt_selectivekd_demo.yaml",
        [
            f"data.manifest={data / 'manifest.csv'}",
            "data.image_size=[32, 24]",
            "data.augment.enabled=true",
            "model.decoder_width=8",
            "train.steps=4",
            "train.batch_size=8",
            "train.ckpt_every=2",
            "train.log_every=1",
            "train.num_workers=0",
            "train.device=cpu",
            "train.progress=false",
            "train.tensorboard=false",
            f"train.out_dir={out_dir}",
            f"strategy.name={strategy}",
            *overrides,
        ],
    )


def train(cfg: RunConfig, init_seed: int = 0) -> dict:
    # run_train builds the student from the ambient torch RNG (train.seed does not seed it): fix it here
    torch.manual_seed(init_seed)
    return run_train(cfg)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(latest_checkpoint(run_dir))["model"]


def losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny synthetic DBT set and a supervised teacher trained on it (one process)."""
    root = tmp_path_factory.mktemp("ddp_strategy")
    # seed 2: 6 exams with a test split and cancer breasts both annotated and weakly labelled
    run_synth("dbt", root / "data", n=6, seed=2, fmt="npy")
    threads = torch.get_num_threads()  # module scope: outside the per-test thread fixture
    torch.set_num_threads(1)
    try:
        train(run_config(root / "data", root / "teacher", "supervised"))
    finally:
        torch.set_num_threads(threads)
    return root / "data", root / "teacher"


def student_overrides(teacher_dir: Path, *extra: str) -> list[str]:
    return [f"strategy.teacher_checkpoint={teacher_dir}", *extra]


DDP_RUNS = {"ddp": False, "ddp_no_grad_averaging": True}  # run dir → break the gradient averaging


def worker(rank: int, port: int, data: str, teacher_dir: str, out: str) -> None:
    rank_env(rank, WORLD, port)
    torch.set_num_threads(1)
    register_groupnorm_model()  # a spawned child does not inherit the parent's registration
    try:
        for name, broken in DDP_RUNS.items():
            if broken:  # the negative control: no DDP wrapper, no all-reduce; each rank steps on its own half
                engine_loop.wrap_student = lambda *args: []
                engine_loop.sync_gradients = lambda *args: None
            extra = student_overrides(Path(teacher_dir), f"model.name={GN_MODEL}", *SGD)
            train(run_config(Path(data), Path(out) / name, STUDENT, *extra))
    finally:
        cleanup_distributed()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_ranks_train_the_student_like_one_process(teacher, tmp_path, monkeypatch):
    data, teacher_dir = teacher
    monkeypatch.setitem(registry._REGISTRY, GN_MODEL, registry.ModelEntry(GN_MODEL, groupnorm_tiny_cnn))
    extra = student_overrides(teacher_dir, f"model.name={GN_MODEL}", *SGD)
    single = train(run_config(data, tmp_path / "single", STUDENT, *extra))
    # the batches mix both groups, and the weak group exists only through the teacher's selection
    assert "weak" in single["composition"] and "annotated" in single["composition"]

    # fork, not spawn: the children reuse this process's imports (torch alone takes seconds to import)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    args = (free_port(), str(data), str(teacher_dir), str(tmp_path))
    mp.start_processes(worker, args, nprocs=WORLD, start_method=method)

    one, ddp = tmp_path / "single", tmp_path / "ddp"
    expected, got = final_weights(one), final_weights(ddp)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=RTOL, atol=ATOL, msg=lambda m, name=name: f"{name}: {m}")

    # the test can fail: without gradient averaging rank 0's weights leave the tolerance by orders of magnitude
    broken = final_weights(tmp_path / "ddp_no_grad_averaging")
    worst = max((broken[k] - v).abs().max().item() for k, v in expected.items())
    assert worst > 1000 * ATOL

    # logged losses are the mean over ranks, i.e. the loss of the whole batch
    logged_one, logged_ddp = losses(one), losses(ddp)
    assert [s for s, _ in logged_ddp] == [s for s, _ in logged_one] == [1, 2, 3, 4]
    assert [v for _, v in logged_ddp] == pytest.approx([v for _, v in logged_one], rel=1e-5)

    # sharded scoring gathered in rank order: the very same file, hence the very same selection
    assert (ddp / TEACHER_SCORES).read_bytes() == (one / TEACHER_SCORES).read_bytes()
    assert (ddp / "train_slices.csv").read_bytes() == (one / "train_slices.csv").read_bytes()
    # rank 0 alone writes: the same files as one process, nothing per rank, no temporaries left behind
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in one.iterdir())
    assert [p.name for p in list_checkpoints(ddp)] == [p.name for p in list_checkpoints(one)]
    summary = json.loads((ddp / "metrics.json").read_text())
    assert summary["steps"] == 4 and summary["composition"] == single["composition"]
    # the student's test-split scores, also sharded and gathered
    scores_one, scores_ddp = (pd.read_csv(d / "predictions_slice.csv", dtype={"image_id": str}) for d in (one, ddp))
    pd.testing.assert_frame_equal(scores_ddp, scores_one, check_exact=False, rtol=1e-5, atol=1e-6)


def test_killed_and_resumed_student_matches_an_uninterrupted_one(teacher, tmp_path, monkeypatch):
    """The real tiny_cnn (BatchNorm), the demo's AdamW + cosine, killed mid-epoch after the step-2 checkpoint."""
    data, teacher_dir = teacher
    extra = student_overrides(teacher_dir, "train.deterministic=true")
    whole = tmp_path / "whole"
    train(run_config(data, whole, STUDENT, *extra))
    end = load_checkpoint(latest_checkpoint(whole))
    assert (end["epoch"], end["batch_index"]) == (0, 4)  # an epoch is longer than the run: step 2 is mid-epoch

    killed = tmp_path / "killed"
    cls = strategy_class(STUDENT)
    loss = cls.loss

    def loss_then_kill(self, batch, step):
        if step == 3:  # during the 4th step: step 3 is logged, the newest checkpoint is step 2
            raise KeyboardInterrupt
        return loss(self, batch, step)

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(cls, "loss", loss_then_kill)
        train(run_config(data, killed, STUDENT, *extra))
    ckpt = load_checkpoint(latest_checkpoint(killed))
    assert (ckpt["step"], ckpt["epoch"], ckpt["batch_index"]) == (2, 0, 2)  # mid-epoch
    assert [step for step, _ in losses(killed)] == [1, 2, 3]

    summary = train(run_config(data, killed, STUDENT, *extra), init_seed=1)  # other init: the checkpoint wins
    assert summary["steps"] == 4
    expected, got = final_weights(whole), final_weights(killed)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert losses(killed) == losses(whole)  # each step once, with the same values
    for name in (TEACHER_SCORES, "train_slices.csv", "predictions_slice.csv"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name
