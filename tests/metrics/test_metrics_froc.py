"""2D FROC on hand-worked cases: both known traps, duplicates, empty images, several lesions, ties."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from breastssl.metrics import froc_2d, froc_2d_maps

IMAGES = ["a", "b", "c", "d"]  # d: a normal image without predictions, still in the FPPI denominator
LESIONS = pd.DataFrame(
    {"image_id": ["a", "a", "b"], "x": [0, 200, 0], "y": [0, 200, 0], "w": [20, 20, 20], "h": [20, 20, 20]}
)
ON_L1, ON_L2, ON_L3, FAR = (0, 0), (200, 200), (0, 0), (500, 500)


def preds(rows: list[tuple[str, tuple[int, int], float]]) -> pd.DataFrame:
    return pd.DataFrame([{"image_id": i, "x": xy[0], "y": xy[1], "w": 20, "h": 20, "score": s} for i, xy, s in rows])


# p1 finds L1; p2 finds it again (ignored); p3 misses in an image with a lesion (FP, tied with p2);
# p4 finds L3, tied with the FP p5; p6, the lowest score, finds L2.
CASE = preds(
    [("a", ON_L1, 0.9), ("a", ON_L1, 0.8), ("b", FAR, 0.8), ("b", ON_L3, 0.3), ("c", FAR, 0.3), ("a", ON_L2, 0.1)]
)


def test_hand_worked_curve():
    r = froc_2d(CASE, LESIONS, IMAGES)
    assert r.thresholds.tolist() == [np.inf, 0.9, 0.8, 0.3, 0.1]  # ties are one operating point
    assert r.fppi.tolist() == [0.0, 0.0, 0.25, 0.5, 0.5]  # 4 images, the empty one included
    assert r.sensitivity.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert r.sensitivity_at == pytest.approx({0.1: 1 / 3, 0.2: 1 / 3, 0.5: 1.0, 1.0: 1.0})
    assert r.mean_sensitivity == pytest.approx(2 / 3)


def test_lowest_threshold_point_is_kept():
    r = froc_2d(CASE, LESIONS, IMAGES)
    # the last point keeps every prediction; dropping it would give sensitivity 2/3 at 0.5 FPPI
    assert (r.thresholds[-1], r.fppi[-1], r.sensitivity[-1]) == (0.1, 0.5, 1.0)


def test_unmatched_detection_is_never_a_tp():
    # a high-scoring miss in an image that has a lesion must not count as finding it
    r = froc_2d(preds([("b", FAR, 0.9), ("b", ON_L3, 0.2)]), LESIONS, IMAGES)
    assert r.sensitivity.tolist() == pytest.approx([0, 0, 1 / 3])
    assert r.fppi.tolist() == [0, 0.25, 0.25]


def test_duplicates_are_neither_tp_nor_fp():
    r = froc_2d(preds([("a", ON_L1, 0.9)] * 3 + [("a", (1, 1), 0.9)]), LESIONS, IMAGES)
    assert r.fppi.tolist() == [0, 0] and r.sensitivity.tolist() == pytest.approx([0, 1 / 3])


def test_empty_images_count_in_denominator():
    r = froc_2d(preds([("c", FAR, 0.5)]), LESIONS, IMAGES + ["e", "f", "g", "h"])
    assert r.fppi[-1] == 1 / 8 and r.sensitivity[-1] == 0.0
    r = froc_2d(preds([]).reindex(columns=["image_id", "x", "y", "w", "h", "score"]), LESIONS, IMAGES)
    assert r.fppi.tolist() == [0.0] and r.sensitivity_at[1.0] == 0.0


def test_iou_threshold_and_center_criterion():
    big = preds([("b", (-30, -30), 0.7)]).assign(w=80, h=80)  # IoU with L3 = 400/6400 < 0.2, centre inside
    assert froc_2d(big, LESIONS, IMAGES).sensitivity[-1] == 0.0
    assert froc_2d(big, LESIONS, IMAGES, criterion="center").sensitivity[-1] == pytest.approx(1 / 3)
    assert froc_2d(big, LESIONS, IMAGES, iou_threshold=0.05).sensitivity[-1] == pytest.approx(1 / 3)


def test_unknown_images_and_bad_scores_raise():
    with pytest.raises(ValueError, match="not in image_ids"):
        froc_2d(preds([("zz", FAR, 0.5)]), LESIONS, IMAGES)
    with pytest.raises(ValueError, match="finite"):
        froc_2d(preds([("a", FAR, np.nan)]), LESIONS, IMAGES)
    with pytest.raises(ValueError, match="lack column"):
        froc_2d(preds([("a", FAR, 0.5)]).drop(columns="w"), LESIONS, IMAGES)


def test_no_lesions_gives_nan_sensitivity():
    with pytest.warns(UserWarning, match="without lesions"):
        r = froc_2d(preds([("a", FAR, 0.5)]), LESIONS.iloc[:0], IMAGES)
    assert np.isnan(r.mean_sensitivity)


def test_probability_maps_against_masks():
    prob = np.zeros((40, 40))
    prob[2:6, 2:6] = 0.9  # on the lesion
    prob[20:24, 20:24] = 0.95  # a false positive region, scored by its maximum
    prob[21, 21] = 0.97
    mask = np.zeros((40, 40), int)
    mask[2:6, 2:7] = 1
    empty = np.zeros((40, 40))
    r = froc_2d_maps([prob, empty], [mask, empty.astype(int)])
    assert r.thresholds.tolist() == [np.inf, 0.97, 0.9]
    assert r.fppi.tolist() == [0, 0.5, 0.5] and r.sensitivity.tolist() == [0, 0, 1]
