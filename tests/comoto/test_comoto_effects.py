"""CoMoTo effects on hand-built detections: a clearly better row has a CI above 0, an equal one holds 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.experiments._comoto_effects import bcs_scaled, comoto_effects, volume_weights
from breastssl.metrics import froc_dbt

HIT_RATE = {"dbt_only": 0.3, "pretraining": 0.3, "image_kd": 0.3, "lskd": 0.85, "lskd_impa": 0.85}


def truth(n_exams: int = 30, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Exams of two 80-px-high volumes; the lcc volume of the first two thirds holds one 10-px lesion."""
    rng = np.random.default_rng(seed)
    man = pd.DataFrame({"StudyUID": np.repeat([f"e{i:02d}" for i in range(n_exams)], 2),
                        "View": ["lcc", "rcc"] * n_exams, "rows": 80})  # fmt: skip
    les = man[(man["View"] == "lcc") & (man.index < 2 * n_exams * 2 // 3)]
    boxes = pd.DataFrame({"StudyUID": les["StudyUID"].to_numpy(), "View": "lcc",
                          "Slice": rng.integers(5, 35, len(les)), "X": rng.uniform(5, 50, len(les)),
                          "Y": rng.uniform(5, 60, len(les)), "Width": 10.0, "Height": 10.0,
                          "VolumeSlices": 40})  # fmt: skip
    return man, boxes, man[["StudyUID", "View"]]


def detections(boxes: pd.DataFrame, labels: pd.DataFrame, hit_rate: float, rng: np.random.Generator) -> pd.DataFrame:
    """A hit (the box itself, score 0.6–1) of each lesion with probability hit_rate; 2 FPs per volume (score 0–1)."""
    hits = boxes[rng.random(len(boxes)) < hit_rate]
    tp = pd.DataFrame({"StudyUID": hits["StudyUID"], "View": hits["View"], "X": hits["X"], "Y": hits["Y"],
                       "Width": 10.0, "Height": 10.0, "Z": hits["Slice"] - 1.0, "Depth": 2.0,
                       "Score": rng.uniform(0.6, 1.0, len(hits))})  # fmt: skip
    fp = labels.loc[labels.index.repeat(2)].assign(X=70.0, Y=0.0, Width=8.0, Height=8.0, Z=0.0, Depth=2.0)
    fp["Score"] = rng.uniform(0.0, 1.0, len(fp))
    return pd.concat([tp, fp], ignore_index=True)


@pytest.fixture(scope="module")
def table():
    man, boxes, labels = truth()
    rng = np.random.default_rng(1)
    runs = {(s, f, row): detections(boxes, labels, rate, rng)
            for s in range(5) for f in (1.0, 0.1) for row, rate in HIT_RATE.items()}  # fmt: skip
    return runs, (man, boxes, labels), comoto_effects(runs, (man, boxes, labels), n_boot=300)


def test_row_means_are_the_mean_of_the_runs_froc(table):
    runs, (man, boxes, labels), res = table
    row = res.rows[(res.rows["reading"] == "scaled") & (res.rows["fraction"] == "0.1") & (res.rows["row"] == "lskd")]
    want = np.mean([froc_dbt(*bcs_scaled(runs[(s, 0.1, "lskd")], boxes, man), labels)["mean_sensitivity_positive"]
                    for s in range(5)])  # fmt: skip
    assert row["mean"].item() == pytest.approx(want, abs=1e-12)
    assert row["ci_low"].item() < want < row["ci_high"].item() and row["seeds"].item() == 5


def test_a_clearly_better_row_has_a_ci_above_zero_and_an_equal_one_holds_zero(table):
    _, _, res = table
    eff = res.effects.set_index(["reading", "fraction", "a", "b"])
    better = eff.loc[("scaled", "1", "lskd", "pretraining")]
    assert better["ci_low"] > 0.2 and better["seeds_positive"] == 5  # 0.85 vs 0.3 of the lesions found
    same = eff.loc[("scaled", "1", "lskd_impa", "lskd")]
    assert same["ci_low"] < 0 < same["ci_high"]
    gain = eff.loc[("scaled", "0.1 − 1", "lskd_impa", "pretraining")]  # the same gain at both fractions
    assert gain["ci_low"] < 0 < gain["ci_high"]
    claims = res.claims.set_index("claim")
    assert claims.loc["LsKD beats pretraining (100% of the DBT training set)", "holds"]
    assert not claims.loc["LsKD + ImPA beats LsKD (10% of the DBT training set)", "holds"]
    assert claims["verdict"].str.contains("not separable").sum() >= 3


def test_exams_are_resampled_whole_and_lesion_exams_apart():
    man, boxes, labels = truth()
    w = volume_weights(labels, boxes, 200, np.random.default_rng(0))
    assert (w[:, 0::2] == w[:, 1::2]).all()  # both views of an exam carry its count
    lesion = labels["StudyUID"].isin(boxes["StudyUID"]).to_numpy()
    assert (w[:, lesion].sum(axis=1) == lesion.sum()).all()
