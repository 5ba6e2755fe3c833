"""The self-training data at paper scale (issue 18): sparse mask stores read as the dense arrays did, and the
mining in chunks gives the masks, roles and checkpoints of one pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from selftrain_fixtures import lesion_pairs
from torch import nn

import breastssl.strategies.self_training as st
from breastssl.data.sparse_maps import SparseMaps
from breastssl.run.self_training import build_student, self_training_data
from breastssl.strategies.self_training import SelfTrainingConfig


def test_sparse_maps_read_as_the_dense_array():
    rng = np.random.default_rng(0)
    dense = np.zeros((10, 1, 4, 3), np.float16)
    sparse = SparseMaps(10, (1, 4, 3), np.float16)
    for _ in range(5):  # overwrite random items, some with zeros (which are then dropped)
        idx = rng.choice(10, 4, replace=False)
        values = (rng.random((4, 1, 4, 3)) * (rng.random((4, 1, 1, 1)) > 0.4)).astype(np.float16)
        dense[idx] = values
        sparse.set(idx, values)
    assert sparse.shape == dense.shape and len(sparse) == 10
    assert set(sparse.items) == set(np.flatnonzero(dense.reshape(10, -1).any(axis=1)))
    for key in (3, -1, slice(2, 7), np.array([9, 0, 4]), (slice(None), 0)):
        np.testing.assert_array_equal(sparse[key], dense[key])
    np.testing.assert_array_equal(sparse.subset([5, 1])[:], dense[[5, 1]])
    with pytest.raises(IndexError):
        sparse[10]
    restored = SparseMaps(10, (1, 4, 3), np.float16)
    restored.load_state(sparse.state())
    np.testing.assert_array_equal(restored[:], dense)
    legacy = SparseMaps(10, (1, 4, 3), np.float16)
    legacy.load_state(torch.from_numpy(dense))  # a dense tensor, as checkpoints before sparse maps held
    np.testing.assert_array_equal(legacy[:], dense)
    kept = SparseMaps(3, (2,), bool)
    kept.set([0, 1, 2], np.ones((3, 2), bool), keep=np.array([True, False, True]))
    assert kept.stored([0, 1, 2]).tolist() == [True, False, True] and not kept[1].any()


class Bright(nn.Module):
    """Lesion logits from brightness: the fixture's lesions (0.6 above a background below 0.3) map high."""

    def __init__(self) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(20.0))

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        return {"mask_logits": self.gain * (x - 0.45), "logits": x.mean(dim=(1, 2, 3))}


def _mined(monkeypatch, chunk: int) -> dict:
    monkeypatch.setattr(st, "MINING_CHUNK", chunk)
    pairs = lesion_pairs(24, 16)
    y = np.where(pairs.table["has_lesion"], 0.97, 0.03)
    data = self_training_data(pairs, np.arange(6), np.arange(6, 24), y)
    cfg = SelfTrainingConfig(stage1_epochs=1, rounds=1, round_epochs=1, p0_every=1, score_batch_size=2)
    cfg.crf.backend = "numpy"
    cfg.crf.workers = 1
    _, strategy = build_student("bilateral_two_view", {"backbone": "tiny", "width": 4, "decoder_width": 16}, cfg,
                                data, 2, seed=0)  # fmt: skip
    strategy.student = Bright()  # a student that sees the bright lesions, so that mining finds some
    strategy.before_round(1)  # the first block of stage 2: score, CRF, mine
    return {"roles": data.roles.copy(), "pseudo": data.pseudo[:], "crf": data.crf[:], "state": strategy.state_dict(),
            "stored": sorted(data.pseudo.items)}  # fmt: skip


def test_mining_in_chunks_equals_one_pass(monkeypatch):
    whole, chunked = _mined(monkeypatch, 1000), _mined(monkeypatch, 1)  # one chunk; chunks of one score batch
    np.testing.assert_array_equal(whole["roles"], chunked["roles"])
    np.testing.assert_array_equal(whole["pseudo"], chunked["pseudo"])
    np.testing.assert_array_equal(whole["crf"], chunked["crf"])
    assert whole["stored"] == chunked["stored"] and whole["stored"], "some weak image must be a TP candidate"
    # pseudo masks are kept exactly where the CRF found a lesion (the only images that can be TP)
    assert whole["stored"] == sorted(np.flatnonzero(whole["crf"].reshape(24, -1).any(axis=1)))
    assert len(whole["state"]["pseudo"]["index"]) == len(whole["stored"])  # checkpoints hold the stored ones only
