"""The weighted DBT FROC (volume weights) against the unweighted ``froc_dbt`` it must reproduce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.metrics import dbt_volume_counts, froc_dbt, weighted_froc_dbt


def random_case(seed: int, n_volumes: int = 12) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Volumes (half with 1–2 boxes), predictions on and off the boxes, scores with ties (1 decimal)."""
    rng = np.random.default_rng(seed)
    labels = pd.DataFrame({"StudyUID": [f"s{i // 2}" for i in range(n_volumes)],
                           "View": ["lcc", "rcc"] * (n_volumes // 2)})  # fmt: skip
    boxes, preds = [], []
    for study, view in labels.itertuples(index=False):
        n_box = int(rng.integers(1, 3)) if rng.random() < 0.5 else 0
        for _ in range(n_box):
            x, y, z = rng.uniform(100, 1500, 3)
            boxes.append(dict(StudyUID=study, View=view, Slice=int(z / 40), X=x, Y=y, Width=60.0, Height=60.0,
                              VolumeSlices=40))  # fmt: skip
            for _ in range(int(rng.integers(0, 3))):  # near the box: a hit, or a miss by depth
                dz = rng.choice([0.0, 0.0, 15.0])
                preds.append(dict(StudyUID=study, View=view, X=x + rng.normal(0, 20), Y=y + rng.normal(0, 20),
                                  Width=50.0, Height=50.0, Z=int(z / 40) + dz - 1, Depth=2.0))  # fmt: skip
        for _ in range(int(rng.integers(0, 5))):  # false positives anywhere
            preds.append(dict(StudyUID=study, View=view, X=rng.uniform(0, 2000), Y=rng.uniform(0, 2000),
                              Width=40.0, Height=40.0, Z=float(rng.integers(0, 38)), Depth=2.0))  # fmt: skip
    p = pd.DataFrame(preds)
    p["Score"] = np.round(rng.uniform(0, 1, len(p)), 1)  # ties between TPs and FPs
    return p, pd.DataFrame(boxes), labels


def repeated(pred: pd.DataFrame, boxes: pd.DataFrame, labels: pd.DataFrame, counts: np.ndarray):
    """The tables with volume i repeated counts[i] times, each copy under its own StudyUID."""
    keys = labels["StudyUID"] + "|" + labels["View"]
    out = []
    for df in (pred, boxes, labels):
        k = df["StudyUID"] + "|" + df["View"]
        parts = []
        for i, key in enumerate(keys):
            for c in range(int(counts[i])):
                parts.append(df[k == key].assign(StudyUID=df.loc[k == key, "StudyUID"] + f"#{c}"))
        out.append(pd.concat(parts, ignore_index=True))
    return out


@pytest.mark.parametrize("seed", range(8))
def test_unit_weights_equal_the_unweighted_froc(seed):
    pred, boxes, labels = random_case(seed)
    want = froc_dbt(pred, boxes, labels)
    got = weighted_froc_dbt(dbt_volume_counts(pred, boxes, labels), np.ones((2, len(labels))))
    for key, value in want.items():
        assert got[key] == pytest.approx([value, value], abs=1e-12), key


@pytest.mark.parametrize("seed", range(8))
def test_integer_weights_equal_the_explicitly_repeated_volumes(seed):
    pred, boxes, labels = random_case(seed)
    counts = dbt_volume_counts(pred, boxes, labels)
    rng = np.random.default_rng(100 + seed)
    weights = rng.multinomial(len(labels), np.full(len(labels), 1 / len(labels)), 3)  # bootstrap replicates
    weights[0, np.flatnonzero(counts.positive)[0]] = 0  # a positive volume left out: its thresholds go too
    got = weighted_froc_dbt(counts, weights)
    for b, w in enumerate(weights):
        if not (w * counts.positive).any():
            continue
        want = froc_dbt(*repeated(pred, boxes, labels, w))
        for key, value in want.items():
            assert got[key][b] == pytest.approx(value, abs=1e-12), (b, key)


def test_volumes_outside_labels_are_refused():
    pred, boxes, labels = random_case(0)
    with pytest.raises(ValueError, match="labels lack"):
        dbt_volume_counts(pred, boxes, labels.iloc[1:])
