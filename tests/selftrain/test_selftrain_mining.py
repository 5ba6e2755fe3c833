"""The tentative TP/FP/FN/TN table (paper Table 1), the p0 schedule and the 1:5 batches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.data.mammo_pairs import PairArrays
from breastssl.data.self_training_data import FN, FP, FULL, TN, TP, UNSURE, PosNegSampler, SelfTrainingDataset
from breastssl.strategies.self_training_mining import mine, p0_at, role_counts


def test_mining_table_hand_built_cases():
    #             NLP+ mask+  NLP− mask+  NLP+ mask−  NLP− mask−  unsure+  unsure−  edge: y == p0 is not NLP+
    y = np.array([0.97, 0.02, 0.99, 0.01, 0.5, 0.5, 0.95, 0.1])
    mask = np.array([True, True, False, False, True, False, True, False])
    roles = mine(y, mask, p0=0.95)
    assert roles.tolist() == [TP, FP, FN, TN, UNSURE, UNSURE, UNSURE, UNSURE]
    # a lower p0 lets the edge cases in
    assert mine(y, mask, p0=0.85).tolist() == [TP, FP, FN, TN, UNSURE, UNSURE, TP, TN]
    assert role_counts(roles) == {"TP": 1, "FP": 1, "FN": 1, "TN": 1, "unsure": 4}
    with pytest.raises(ValueError, match="shape"):
        mine(y, mask[:3], 0.9)


def test_p0_schedule_paper_values():
    assert [p0_at(e) for e in (0, 4, 5, 9, 10, 14)] == pytest.approx([0.95, 0.95, 0.85, 0.85, 0.75, 0.75])
    assert p0_at(100) == 0.5  # floored: NLP+ and NLP− never overlap


def _toy(n_full_pos=2, n_full_neg=4, n_weak=6):
    n = n_full_pos + n_full_neg + n_weak
    masks = np.zeros((n, 1, 8, 8), np.uint8)
    masks[:n_full_pos, :, 2:4, 2:4] = 1
    table = pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "has_lesion": masks.reshape(n, -1).any(1)})
    pairs = PairArrays(
        np.random.default_rng(0).random((n, 1, 8, 8), np.float32), np.zeros((n, 1, 8, 8), np.float32), masks, table
    )
    is_full = np.arange(n) < n_full_pos + n_full_neg
    y = np.r_[np.full(n_full_pos + n_full_neg, np.nan), np.linspace(0.02, 0.98, n_weak)]
    return SelfTrainingDataset(pairs, is_full, y)


def test_dataset_items_follow_roles_and_hard_soft_switches():
    data = _toy()
    weak = data.weak_index
    data.roles[weak] = [FP, TN, UNSURE, UNSURE, FN, TP]
    data.pseudo.set([weak[-1]], np.full((1, 8, 8), 0.3))
    crf = np.zeros((1, 8, 8), bool)
    crf[0, 1:3, 1:3] = True
    data.crf.set([weak[-1]], crf)
    tp = data[weak[-1]]
    assert tp["weak_seg"] == 1 and tp["weak_cls"] == 1 and tp["full"] == 0
    assert float(tp["label"]) == pytest.approx(0.98) and float(tp["mask"].max()) == pytest.approx(0.3, abs=1e-3)
    fp = data[weak[0]]
    assert fp["weak_seg"] == 0 and fp["weak_cls"] == 1 and float(fp["mask"].sum()) == 0
    full = data[0]
    assert full["full"] == 1 and float(full["label"]) == 1 and float(full["mask"].sum()) == 4
    data.soft_mask, data.soft_nlp = False, False
    tp = data[weak[-1]]
    assert float(tp["label"]) == 1.0 and float(tp["mask"].sum()) == 4  # CRF mask, y > 0.5
    assert set(data.positives()) == {0, 1, weak[4], weak[5]}
    assert set(data.negatives()) == {2, 3, 4, 5, weak[0]}
    assert (data.roles[:6] == FULL).all()


def test_batches_are_one_positive_to_five_negatives_and_reproducible():
    data = _toy()
    sampler = PosNegSampler(data, batch_size=12, batches_per_epoch=3, seed=1)
    batches = list(sampler)
    pos = set(data.positives().tolist())
    assert all(sum(i in pos for i in b) == 2 and len(b) == 12 for b in batches)
    assert batches == list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != batches


def test_full_share_keeps_the_fully_labelled_images_in_every_batch():
    data = _toy(n_full_pos=2, n_full_neg=4, n_weak=30)
    weak = data.weak_index
    data.roles[weak] = np.r_[np.full(20, FN), np.full(10, FP)]  # weak images crowd both pools
    full = set(np.flatnonzero(data.is_full).tolist())
    pos = set(data.positives().tolist())
    uniform = list(PosNegSampler(data, batch_size=12, batches_per_epoch=40, seed=0))
    shared = list(PosNegSampler(data, batch_size=12, batches_per_epoch=40, seed=0, full_share=0.5))
    for b in shared:  # 2 positives → 1 full + 1 weak; 10 negatives → 5 full + 5 weak
        assert sum(i in pos and i in full for i in b) == 1 and sum(i not in pos and i in full for i in b) == 5
    n_full_uniform = sum(i in full for b in uniform for i in b)
    assert n_full_uniform < sum(i in full for b in shared for i in b) == 6 * 40
    # default: the pooled draw, unchanged (same batches as without the option)
    assert uniform == list(PosNegSampler(data, batch_size=12, batches_per_epoch=40, seed=0, full_share=None))
