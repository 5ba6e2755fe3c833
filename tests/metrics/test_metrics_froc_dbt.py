"""DBT FROC by the BCS-DBT challenge rule on hand-built cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.metrics import froc_dbt, froc_dbt_curves, match_dbt

LABELS = pd.DataFrame({"PatientID": ["p1", "p1", "p2", "p2"], "StudyUID": ["s1", "s1", "s2", "s2"]}).assign(
    View=["lcc", "rcc", "lcc", "rcc"], Normal=[0, 1, 0, 1], Actionable=0, Benign=0, Cancer=[1, 0, 1, 0]
)
BOXES = pd.DataFrame(
    {
        "PatientID": ["p1", "p1", "p2"],
        "StudyUID": ["s1", "s1", "s2"],
        "View": ["lcc", "lcc", "lcc"],  # two boxes in one view
        "Subject": ["x"] * 3,
        "Slice": [20, 30, 10],
        "X": [100, 600, 100],
        "Y": [100, 600, 100],
        "Width": [50, 300, 20],
        "Height": [50, 300, 20],
        "Class": ["cancer"] * 3,
        "AD": 0,
        "VolumeSlices": [40, 40, 40],  # z tolerance 10 slices
    }
)


def pred(study: str, view: str, x: float, y: float, z: float, depth: float, score: float, size: float = 20) -> dict:
    return dict(
        PatientID="p", StudyUID=study, View=view, X=x, Width=size, Y=y, Height=size, Z=z, Depth=depth, Score=score
    )


FAR = dict(x=2000, y=2000, z=0, depth=1)
PREDS = pd.DataFrame(
    [
        pred("s1", "lcc", 175, 195, 18, 4, 0.9),  # centre (185, 205): 100 px from box 0's centre → hit by distance
        pred("s1", "lcc", **FAR, score=0.95),  # FP before the first TP
        pred("s1", "lcc", 740, 740, 39, 4, 0.8),  # on box 1 but z = 41, 11 slices away → miss by z (FP)
        pred("s2", "rcc", 740, 740, 28, 4, 0.8),  # in a normal view: FP, tied with the previous
        pred("s1", "lcc", 740, 740, 28, 4, 0.5),  # hits box 1
        pred("s2", "lcc", **FAR, score=0.5),  # FP tied with a TP
        pred("s2", "lcc", **FAR, score=0.45),
        pred("s2", "lcc", **FAR, score=0.45),
        pred("s2", "lcc", 100, 100, 8, 4, 0.4),  # hits box 2
        pred("s1", "lcc", 115, 115, 19, 2, 0.3),  # second hit of box 0: ignored
        pred("s1", "lcc", **FAR, score=0.2),
        pred("s2", "rcc", **FAR, score=0.2),  # normal view FP
    ]
)


def test_matching_rules():
    tp, gtid = match_dbt(PREDS, BOXES)
    assert tp.tolist() == [True, False, False, False, True, False, False, False, True, True, False, False]
    assert gtid[tp].tolist() == [0, 1, 2, 0]


def test_hand_worked_sensitivities():
    r = froc_dbt(PREDS, BOXES, LABELS)
    # positive volumes (2): FP/volume 0, .5, 1.5, 2.5, 2.5, 3 at sensitivity 0, 1/3, 2/3, 1, 1, 1
    assert r["sensitivity_at_1_fps_positive"] == pytest.approx(0.5)
    assert r["sensitivity_at_2_fps_positive"] == pytest.approx(5 / 6)
    assert r["sensitivity_at_3_fps_positive"] == 1.0 and r["sensitivity_at_4_fps_positive"] == 1.0
    assert r["mean_sensitivity_positive"] == pytest.approx(5 / 6)
    assert r["sensitivity_at_2_fps_all"] == 1.0
    curves = froc_dbt_curves(PREDS, BOXES, LABELS)
    assert curves["all"][0].tolist() == [0, 0.25, 1.0, 1.5, 1.5, 2.0]  # all 4 volumes, normal-view FPs included
    assert curves["positive"][0].tolist() == [0, 0.5, 1.5, 2.5, 2.5, 3.0]
    assert curves["positive"][1].tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1, 1, 1])


def test_interpolation_all_volumes():
    # only the first four predictions: thresholds 1.95, 0.9, -0.05; FP/volume (all) 0, .25, .75
    r = froc_dbt(PREDS.iloc[:4], BOXES, LABELS)
    assert r["sensitivity_at_2_fps_all"] == pytest.approx(1 / 3)
    assert r["sensitivity_at_1_fps_positive"] == pytest.approx(1 / 3)


def test_nearest_box_in_3d_wins():
    boxes = BOXES.iloc[:1].assign(X=[120], Y=[90], Width=[20], Height=[20], Slice=[0], VolumeSlices=[80])
    boxes = pd.concat([boxes, boxes.assign(X=140, Slice=10)], ignore_index=True)  # centres (130,100) and (150,100)
    p = pd.DataFrame([pred("s1", "lcc", 130, 90, 10, 0, 0.7)])  # centre (140, 100), z 10: 10 px from both in 2D
    assert match_dbt(p, boxes)[1].tolist() == [1]  # nearer in 3D


def test_operating_points_only_at_tp_scores():
    # 12 FPs above the only hit: the points are (0, 0) and (6 FP/volume, 1/3), nothing in between,
    # so sensitivity is interpolated linearly along that one segment (the challenge's behaviour)
    many = pd.DataFrame([pred("s1", "lcc", **FAR, score=0.99 - i / 100) for i in range(12)])
    late_hit = pd.DataFrame([pred("s2", "lcc", 100, 100, 8, 4, 0.01)])
    r = froc_dbt(pd.concat([many, late_hit]), BOXES, LABELS)
    assert r["sensitivity_at_1_fps_positive"] == pytest.approx(1 / 18)
    assert r["sensitivity_at_4_fps_positive"] == pytest.approx(2 / 9)
    assert froc_dbt_curves(pd.concat([many, late_hit]), BOXES, LABELS)["positive"][0].tolist() == [0, 6.0]


def test_no_predictions_and_bad_input():
    empty = PREDS.iloc[:0]
    assert froc_dbt(empty, BOXES, LABELS)["mean_sensitivity_positive"] == 0.0
    with pytest.raises(ValueError, match="lack column"):
        froc_dbt(PREDS.drop(columns="Depth"), BOXES, LABELS)
    with pytest.raises(ValueError, match="rows \\[2\\]"):
        froc_dbt(PREDS.assign(Score=np.where(np.arange(12) == 2, np.nan, PREDS["Score"])), BOXES, LABELS)
