"""No label leak (every annotation × breast label × setting), composition modes, and the prior correction."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from breastssl.data.prior import prior_shift, shift_probabilities
from breastssl.data.sampling import ComposedBatchSampler, CompositionConfig, group_counts, slice_table
from breastssl.data.selection import near_lesion, selection_sweep
from breastssl.errors import DataError

N = 6  # slices per hand-built stack
ANNOTATIONS = ("full", "weak", "report", "none")
LABELS = ("cancer", "benign", "normal", "unknown")


def one_row(annotation: str, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    row = {"image_id": "S", "exam_id": "e", "laterality": "L", "vendor": "V", "annotation": annotation,
           "breast_label": label, "n_slices": N, "path": "S.npy"}  # fmt: skip
    lesions = pd.DataFrame([{"image_id": "S", "slice": 2, "lesion_class": "malignant", "mask_path": "m.png"}])
    return pd.DataFrame([row]), lesions


def expected(annotation: str, label: str, weak_labels: bool) -> dict[int, tuple[str, float]]:
    """slice → (role, label): DESIGN §3 / §5.1 written out by hand, one case at a time."""
    every = range(N)
    if annotation == "full" and label == "cancer":
        unl = "weak_pos" if weak_labels else "unannotated"
        return {z: ("annotated_pos", 1.0) if z in (1, 2, 3) else (unl, 1.0 if weak_labels else math.nan) for z in every}
    if annotation == "full":  # benign / normal
        return {z: ("annotated_neg", 0.0) for z in every if z % 2 == 0}
    if not weak_labels:  # weak, report and none rows alike: every slice is a pool slice without a label
        return {z: ("unannotated", math.nan) for z in every}
    if annotation == "weak" and label == "cancer":
        return {z: ("weak_pos", 1.0) for z in every}
    if annotation == "weak" and label in ("benign", "normal"):
        return {z: ("annotated_neg", 0.0) for z in every if z % 2 == 0}
    return {}  # report / none rows (whatever breast_label says) and weak-unknown: not trained on


CASES = [c for c in itertools.product(ANNOTATIONS, LABELS, (False, True)) if not (c[0] == "full" and c[1] == "unknown")]


@pytest.mark.parametrize("annotation,label,weak_labels", CASES)
def test_breast_labels_train_only_from_weak_rows(annotation, label, weak_labels):
    manifest, lesions = one_row(annotation, label)
    table = slice_table(manifest, lesions, weak_labels=weak_labels)
    got = {int(z): (r, float(y)) for z, r, y in zip(table["slice"], table["role"], table["label"], strict=True)}
    want = expected(annotation, label, weak_labels)
    assert got.keys() == want.keys()
    for z in want:
        assert got[z][0] == want[z][0]
        assert (math.isnan(got[z][1]) and math.isnan(want[z][1])) or got[z][1] == want[z][1], (z, got[z], want[z])


def test_a_fully_annotated_stack_without_a_breast_label_is_a_named_error():
    manifest, lesions = one_row("full", "unknown")
    with pytest.raises(DataError, match="S: annotation=full needs breast_label"):
        slice_table(manifest, lesions, weak_labels=False)


def test_weak_negatives_kd_turns_weak_negative_breasts_into_pool_slices_only():
    manifest, lesions = one_row("weak", "normal")
    table = slice_table(manifest, lesions, weak_labels=True, weak_negatives="kd")
    assert set(table["role"]) == {"unannotated"} and table["label"].isna().all() and len(table) == N
    manifest, lesions = one_row("none", "normal")  # no breast label to act on: still left out
    assert slice_table(manifest, lesions, weak_labels=True, weak_negatives="kd").empty


def test_capped_and_proportional_composition_follow_the_pool_size():
    sizes = {"annotated": 1000, "weak": 50, "kd_only": 4000}
    fixed = group_counts(sizes, 64, CompositionConfig())
    capped = group_counts(sizes, 64, CompositionConfig(mode="capped"))
    prop = group_counts(sizes, 64, CompositionConfig(mode="proportional"))
    assert fixed == {"annotated": 32, "weak": 16, "kd_only": 16}
    # weak: 50 slices may not be drawn more often than annotated ones (0.5/1000 per slice → weight 0.025);
    # kd_only keeps 0.25: weights 0.5 : 0.025 : 0.25 of 64 → 41.3, 2.1, 20.6 → floors 41, 2, 20 + remainder
    assert capped == {"annotated": 42, "weak": 2, "kd_only": 20}
    assert prop["kd_only"] > prop["annotated"] > prop["weak"] >= 1 and sum(prop.values()) == 64
    tiny = group_counts({"annotated": 1000, "kd_only": 3}, 64, CompositionConfig(mode="capped"))
    assert tiny["kd_only"] == 1 and tiny["annotated"] == 63  # a small pool keeps one slot, not zero


def test_prior_shift_of_a_known_oversampling():
    # 20 positives among 1000 supervised slices (π = 0.02), drawn at 25% of the slots (ρ = 0.25)
    plan = pd.DataFrame({"label": [1.0] * 20 + [0.0] * 980, "sup_cls": 1.0, "group": "annotated"})
    positive = plan["label"].to_numpy() == 1
    sampler = ComposedBatchSampler(plan["group"], 64, CompositionConfig(positive_fraction=0.25), positive=positive)
    calib = prior_shift(plan, sampler.members, sampler.counts)
    assert calib["natural_prior"] == pytest.approx(0.02) and calib["train_prior"] == pytest.approx(0.25)
    assert calib["logit_shift"] == pytest.approx(math.log(0.02 / 0.98) - math.log(0.25 / 0.75))
    uniform = ComposedBatchSampler(plan["group"], 64, CompositionConfig(mode="uniform", positive_fraction=0.25),
                                   positive=positive)  # fmt: skip
    assert prior_shift(plan, uniform.members, uniform.counts)["logit_shift"] == pytest.approx(0.0)


def test_a_model_trained_at_a_known_oversampling_is_corrected_to_the_natural_prior():
    """Logistic regression on two Gaussian classes (π = 0.05), trained on batches with half positives: the
    raw mean probability on held-out data sits far above π; the prior-corrected one matches it."""
    gen = np.random.default_rng(0)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (gen.random(n) < 0.05).astype(float)
        return gen.normal(size=(n, 2)) + 1.5 * y[:, None], y

    x, y = draw(20000)
    plan = pd.DataFrame({"label": y, "sup_cls": 1.0, "group": "annotated"})
    sampler = ComposedBatchSampler(plan["group"], 64, CompositionConfig(positive_fraction=0.5), positive=y == 1)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    for epoch in range(20):
        sampler.set_epoch(epoch)
        for batch in sampler:
            idx = torch.tensor([i for _, i in batch])
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(xt[idx])[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    shift = prior_shift(plan, sampler.members, sampler.counts)["logit_shift"]
    xh, yh = draw(20000)
    with torch.no_grad():
        raw = torch.sigmoid(model(torch.tensor(xh, dtype=torch.float32))[:, 0]).numpy()
    corrected = shift_probabilities(raw, shift)
    assert raw.mean() > 3 * yh.mean()  # the oversampled prior inflates every probability
    assert corrected.mean() == pytest.approx(yh.mean(), rel=0.2)


def test_selection_sweep_counts_pool_and_lesion_precision_on_hand_built_stacks():
    rows = [("A", "full", "cancer"), ("C", "weak", "cancer"), ("D", "weak", "normal")]
    manifest = pd.DataFrame([{"image_id": i, "exam_id": "e", "laterality": "L", "vendor": "GE" if i != "A" else "H",
                              "annotation": a, "breast_label": b, "n_slices": 8, "path": "x"}
                             for i, a, b in rows])  # fmt: skip
    lesions = pd.DataFrame([{"image_id": "A", "slice": 3, "lesion_class": "malignant"},
                            {"image_id": "C", "slice": 5, "lesion_class": "malignant"}])  # fmt: skip
    table = slice_table(manifest, lesions, weak_labels=True)  # pool: A's 5 non-key slices + C's 8 slices
    scores = table[["image_id", "slice"]].assign(score=lambda d: np.where(d["image_id"] == "C", d["slice"] / 8, 0.0))
    scores["score_raw"] = shift_probabilities(scores["score"].to_numpy(), 2.0)
    near = near_lesion(table, lesions)
    assert sorted(table.loc[near, "slice"][table.loc[near, "image_id"] == "C"]) == [4, 5, 6]
    sweep = selection_sweep(table, scores, lesions, thresholds=(0.5,))
    overall = sweep[sweep["vendor"] == "overall"].iloc[0]
    assert overall["pool"] == 13 and overall["selected"] == 3  # C's slices 5, 6, 7 have score > 0.5
    assert overall["near_lesion_share"] == pytest.approx(2 / 3)  # 5 and 6 are within ±1 of the key slice
    assert overall["selected_raw"] > overall["selected"]  # the inflated raw scores admit more


def test_near_lesion_follows_a_lesions_depth_extent_where_known():
    table = pd.DataFrame({"image_id": ["C"] * 8, "slice": range(8)})
    deep = pd.DataFrame([{"image_id": "C", "slice": 4, "lesion_class": "malignant", "half_depth": 2.6}])
    assert table["slice"][near_lesion(table, deep)].tolist() == [2, 3, 4, 5, 6]
    thin = deep.assign(half_depth=0.4)  # never narrower than the annotation's ±1
    assert table["slice"][near_lesion(table, thin)].tolist() == [3, 4, 5]
