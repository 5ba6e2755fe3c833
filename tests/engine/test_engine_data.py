"""Deterministic sharded batches, the data position, and moving batches to a device."""

from __future__ import annotations

import pytest
import torch

from breastssl.engine import BatchStream, DataPosition, ShardedBatchSampler, to_device


def test_ranks_split_each_global_batch_and_the_order_depends_on_epoch_only():
    single = ShardedBatchSampler(20, 8, seed=3)
    ranks = [ShardedBatchSampler(20, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for epoch in (0, 1):
        for s in (single, *ranks):
            s.set_epoch(epoch)
        merged = [a + b for a, b in zip(*ranks, strict=True)]
        assert merged == list(single) and len(single) == 2  # the incomplete last batch is dropped
    single.set_epoch(0)
    first = list(single)
    single.set_epoch(1)
    assert list(single) != first
    single.set_epoch(0)
    assert list(single) == first


def test_uneven_split_and_too_small_datasets_are_errors():
    with pytest.raises(ValueError, match="does not split evenly"):
        ShardedBatchSampler(20, 5, world_size=2)
    with pytest.raises(ValueError, match="cannot fill one batch"):
        ShardedBatchSampler(3, 4)


def test_stream_resumed_at_a_position_continues_with_the_same_batches():
    data = torch.arange(12)
    sampler = ShardedBatchSampler(12, 4, seed=1)
    full = BatchStream(data, sampler, DataPosition())
    seen = [full.next().tolist() for _ in range(7)]  # crosses two epoch boundaries
    assert full.position == DataPosition(epoch=2, index=1)
    part = BatchStream(data, ShardedBatchSampler(12, 4, seed=1), DataPosition())
    for _ in range(4):
        part.next()
    resumed = BatchStream(data, ShardedBatchSampler(12, 4, seed=1), part.position)
    assert [resumed.next().tolist() for _ in range(3)] == seen[4:]


def test_to_device_walks_nested_batches():
    batch = {"x": torch.ones(2), "meta": [torch.zeros(1), "a"], "pair": (torch.ones(1), 3)}
    moved = to_device(batch, torch.device("cpu"))
    assert moved["meta"][1] == "a" and isinstance(moved["pair"], tuple) and moved["pair"][1] == 3
    assert torch.equal(moved["x"], batch["x"])


class _PidData(torch.utils.data.Dataset):
    """Returns its index and the id of the process that loaded it."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int) -> dict:
        import os

        return {"x": torch.tensor(i), "pid": torch.tensor(os.getpid())}


def test_worker_loading_keeps_the_order_and_the_workers_across_epochs():
    """With workers, one DataLoader serves every epoch (workers and their caches persist); same batches."""
    plain = BatchStream(_PidData(), ShardedBatchSampler(12, 4, seed=2), DataPosition())
    ref = [plain.next()["x"].tolist() for _ in range(8)]  # 2 epochs and a bit
    stream = BatchStream(_PidData(), ShardedBatchSampler(12, 4, seed=2), DataPosition(), num_workers=2)
    got = [stream.next() for _ in range(8)]
    assert [b["x"].tolist() for b in got] == ref
    assert stream.position == DataPosition(2, 2)
    assert len({int(b["pid"][0]) for b in got}) == 2  # the same two worker processes in every epoch
    resumed = BatchStream(_PidData(), ShardedBatchSampler(12, 4, seed=2), DataPosition(1, 1), num_workers=2)
    assert [resumed.next()["x"].tolist() for _ in range(4)] == ref[4:]
