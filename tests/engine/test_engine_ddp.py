"""Two gloo ranks on CPU train like one process with the same global batch; uneven gathers keep order."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from engine_toys import LinearModel, SquaresDataset, SupervisedBCE, free_port, rank_env

from breastssl.engine import TrainConfig, cleanup_distributed, fit, gather_variable, init_distributed, shard_range

WORLD = 2


def train_config(out_dir) -> TrainConfig:
    return TrainConfig(
        steps=6,
        batch_size=8,
        optim={"name": "sgd", "lr": 0.5, "momentum": 0.9},
        schedule={"name": "cosine", "warmup_steps": 2},
        clip_grad_norm=5.0,
        ckpt_every=3,
        out_dir=str(out_dir),
        progress=False,
        tensorboard=False,
        device="cpu",
    )


def worker(rank: int, port: int, out_dir: str) -> None:
    rank_env(rank, WORLD, port)
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        torch.manual_seed(100 + rank)  # different weights per rank: the loop must start all from rank 0's
        model = LinearModel()
        fit(model, SupervisedBCE(model), SquaresDataset(40), train_config(out_dir), dist_ctx=ctx)
        # the teacher-scoring pattern: each rank scores its shard of a pool of 7, rank order restores the pool
        mine = shard_range(7, ctx)
        scores = torch.tensor([float(i) for i in mine]).reshape(-1, 1).repeat(1, 2)
        gathered = gather_variable(scores, ctx)
        uneven = gather_variable(torch.full((rank + 1,), float(rank)), ctx)
        if ctx.is_main:
            torch.save({"model": model.state_dict(), "pool": gathered, "uneven": uneven}, f"{out_dir}/rank0.pt")
    finally:
        cleanup_distributed()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_gloo_ranks_match_one_process(tmp_path):
    torch.manual_seed(100)
    model = LinearModel()
    fit(model, SupervisedBCE(model), SquaresDataset(40), train_config(tmp_path / "single"))

    # fork, not spawn: the children reuse this process's imports (torch alone takes seconds to import)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(worker, (free_port(), str(tmp_path / "ddp")), nprocs=WORLD, start_method=method)
    got = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(got["model"][name], value, rtol=1e-5, atol=1e-6)

    assert torch.equal(got["pool"], torch.arange(7.0).reshape(-1, 1).repeat(1, 2))
    assert torch.equal(got["uneven"], torch.tensor([0.0, 1.0, 1.0]))
