"""DBT slice sets (which slices train, with which labels), selection by T, batch composition, stacks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from breastssl.data.dbt_slices import SliceDataset, StackStore, load_stack, score_slices
from breastssl.data.sampling import ComposedBatchSampler, CompositionConfig, slice_table, training_table
from breastssl.data.transforms import AugmentConfig
from breastssl.strategies import create_strategy


def stacks() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Four hand-built stacks of 8 slices: annotated cancer (key 3), annotated normal, weak cancer, weak benign."""
    rows = [
        ("A", "e1", "L", "Hologic", "full", "cancer"),
        ("B", "e1", "R", "Hologic", "full", "normal"),
        ("C", "e2", "L", "GE", "weak", "cancer"),
        ("D", "e2", "R", "GE", "weak", "benign"),
    ]
    manifest = pd.DataFrame(
        [
            {"image_id": i, "exam_id": e, "laterality": lat, "vendor": v, "annotation": a, "breast_label": b,
             "n_slices": 8, "path": f"{i}.npy"}
            for i, e, lat, v, a, b in rows
        ]
    )  # fmt: skip
    lesions = pd.DataFrame(
        [
            {"image_id": "A", "slice": 3, "lesion_class": "malignant", "mask_path": "A.png"},
            {"image_id": "D", "slice": 5, "lesion_class": "benign", "mask_path": "D.png"},
        ]
    )
    return manifest, lesions


def slices(table: pd.DataFrame, image_id: str, role: str | None = None) -> list[int]:
    t = table[table.image_id == image_id]
    return sorted(t[t.role == role]["slice"]) if role else sorted(t["slice"])


def test_annotated_positives_are_the_key_slice_plus_minus_one_and_negatives_are_strided():
    manifest, lesions = stacks()
    table = slice_table(manifest, lesions, weak_labels=False)
    assert slices(table, "A", "annotated_pos") == [2, 3, 4]
    assert slices(table, "A", "unannotated") == [0, 1, 5, 6, 7]
    assert slices(table, "B", "annotated_neg") == [0, 2, 4, 6]
    assert slices(table, "C", "unannotated") == list(range(8)) == slices(table, "D", "unannotated")
    assert table.loc[table.role == "annotated_pos", "label"].eq(1).all()
    assert table.loc[table.role == "annotated_neg", "label"].eq(0).all()
    assert table.loc[table.role == "unannotated", "label"].isna().all()


def test_with_weak_labels_negative_breasts_count_as_annotated_negatives():
    manifest, lesions = stacks()
    table = slice_table(manifest, lesions, weak_labels=True)
    assert slices(table, "D", "annotated_neg") == [0, 2, 4, 6]
    assert slices(table, "C", "weak_pos") == list(range(8))
    assert slices(table, "A", "weak_pos") == [0, 1, 5, 6, 7]  # the positive breast's unlabelled slices
    assert "unannotated" not in set(table.role)


def scores_for(table: pd.DataFrame) -> pd.DataFrame:
    # the teacher scores slice z of every stack as z / 10: slices 8..? never exist, so 0.0 .. 0.7
    return table[["image_id", "slice"]].drop_duplicates().assign(score=lambda d: d["slice"] / 10.0)


def plan(name: str, threshold: float | None = None) -> pd.DataFrame:
    from breastssl.models import create_model
    from breastssl.strategies import StrategyConfig

    manifest, lesions = stacks()
    strategy = create_strategy(
        name,
        create_model("tiny_cnn", width=4),
        create_model("tiny_cnn", width=4),
        StrategyConfig(name=name, threshold=threshold),
    )
    table = slice_table(manifest, lesions, weak_labels=strategy.weak_labels)
    return strategy.plan(table, scores_for(table))


def test_supervised_trains_on_annotated_slices_only():
    t = plan("supervised")
    assert set(t.image_id) == {"A", "B"} and set(t.group) == {"annotated"}
    assert t.kd.eq(0).all() and t.sup_cls.eq(1).all() and t.sup_seg.eq(1).all()


def test_kd_takes_every_unlabelled_slice_with_kd_only():
    t = plan("kd")
    assert slices(t, "C") == list(range(8)) and slices(t, "D") == list(range(8))
    pool = t[t.group == "kd_only"]
    assert pool.kd.eq(1).all() and pool.sup_cls.eq(0).all() and pool.sup_seg.eq(0).all()
    assert t[t.group == "annotated"].kd.eq(1).all()


def test_kd_weak_takes_every_slice_of_positive_breasts_kd_only():
    t = plan("kd_weak")
    assert slices(t, "C") == list(range(8))
    assert t[t.image_id == "C"].group.eq("kd_only").all()
    assert slices(t, "D") == [0, 2, 4, 6] and t[t.image_id == "D"].group.eq("annotated").all()


def test_selective_kd_keeps_pool_slices_above_t_anywhere():
    t = plan("selective_kd", threshold=0.45)  # scores z/10 > 0.45: slices 5, 6, 7
    assert slices(t, "C") == [5, 6, 7] and slices(t, "D") == [5, 6, 7]
    assert slices(t, "A") == [2, 3, 4, 5, 6, 7]
    assert t[t.image_id == "C"].group.eq("kd_only").all()


def test_selective_kd_weak_selects_only_inside_positive_breasts_with_both_losses():
    t = plan("selective_kd_weak", threshold=0.45)
    assert slices(t, "C") == [5, 6, 7]
    weak = t[t.image_id == "C"]
    assert weak.group.eq("weak").all() and weak.sup_cls.eq(1).all() and weak.label.eq(1).all()
    assert weak.sup_seg.eq(0).all() and weak.kd.eq(1).all()
    assert slices(t, "D") == [0, 2, 4, 6]  # negative breast: stride-2 negatives, never selected
    assert t[t.image_id == "D"].group.eq("annotated").all()


def test_the_default_thresholds_select_as_documented():
    assert slices(plan("selective_kd"), "C") == []  # nothing above 0.7 (max z/10 = 0.7, strict >)
    assert slices(plan("selective_kd_weak"), "C") == [2, 3, 4, 5, 6, 7]  # > 0.1


def test_composed_batches_are_deterministic_have_the_composition_and_split_over_ranks():
    groups = pd.Series(["annotated"] * 10 + ["weak"] * 3 + ["kd_only"] * 30)
    sampler = ComposedBatchSampler(groups, 8, CompositionConfig(), seed=3)
    assert len(sampler) == 10 // 4 and sampler.counts == {"annotated": 4, "weak": 2, "kd_only": 2}
    sampler.set_epoch(1)
    first = list(sampler)
    assert first == list(sampler) and all(e == 1 for b in first for e, _ in b)
    for batch in first:
        kinds = groups.iloc[[i for _, i in batch]].value_counts().to_dict()
        assert kinds == {"annotated": 4, "weak": 2, "kd_only": 2}
    sampler.set_epoch(2)
    assert list(sampler) != first
    ranks = [ComposedBatchSampler(groups, 8, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(1)
    for whole, a, b in zip(first, *ranks, strict=True):
        assert sorted(a + b) == sorted(whole) and len(a) == len(b) == 4
    uniform = ComposedBatchSampler(groups, 8, CompositionConfig(mode="uniform"))
    assert len(uniform) == 43 // 8


def test_positive_fraction_gives_annotated_positives_their_share_of_every_batch():
    groups = pd.Series(["annotated"] * 40 + ["kd_only"] * 40)
    positive = np.zeros(80, bool)
    positive[[3, 17]] = True  # 2 positives among 40 annotated slices: ~5% as they come
    cfg = CompositionConfig(annotated=0.5, weak=0.0, kd_only=0.5, positive_fraction=0.25)
    sampler = ComposedBatchSampler(groups, 16, cfg, positive=positive, seed=1)
    assert sampler.counts == {"annotated": 6, "annotated_pos": 2, "kd_only": 8}
    assert len(sampler) == 38 // 6  # an epoch is one pass over the annotated negatives
    for batch in sampler:
        idx = [i for _, i in batch]
        assert sum(positive[idx]) == 2 and sum(groups.iloc[idx] == "kd_only") == 8
    plain = ComposedBatchSampler(groups, 16, cfg.model_copy(update={"positive_fraction": None}), positive=positive)
    assert plain.counts == {"annotated": 8, "kd_only": 8}


def test_stack_windowing_mask_dataset_augmentation_and_scoring(tmp_path):
    from PIL import Image

    from breastssl.models import create_model

    rng = np.random.default_rng(0)
    np.save(tmp_path / "A.npy", rng.integers(0, 4096, (8, 20, 16)).astype(np.uint16))
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint8), ((8, 8), (6, 6)))).save(tmp_path / "A.png")
    manifest, lesions = stacks()
    manifest = manifest.iloc[:1].assign(window_center=2048.0, window_width=4096.0)
    stack = load_stack(manifest.iloc[0].to_dict(), tmp_path, (10, 8))
    assert stack.shape == (8, 10, 8) and stack.dtype == np.float32 and stack.min() >= 0 and stack.max() <= 1
    store = StackStore(manifest, tmp_path, (10, 8), lesions, halfwidth=1)
    assert store.mask("A", 4).sum() > 0 and store.mask("A", 5).sum() == 0
    table = training_table(slice_table(manifest, lesions, weak_labels=False), kd=False, use_pool=False)
    data = SliceDataset(table, store, AugmentConfig(), seed=0)
    a, b, c = data[(0, 1)], data[(0, 1)], data[(1, 1)]
    assert torch.equal(a["image"], b["image"]) and not torch.equal(a["image"], c["image"])
    assert a["image"].shape == (1, 10, 8) and a["mask"].shape == (1, 10, 8) and a["label"] == 1
    scores = score_slices(create_model("tiny_cnn", width=4), store, ["A"], batch_size=3)
    assert list(scores["slice"]) == list(range(8)) and scores["score"].between(0, 1).all()
