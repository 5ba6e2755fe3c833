"""The cross-slice merge (3D-aware NMS) on hand-built boxes, and volume predictions in the BCS-DBT format."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from breastssl.inference import PRED_COLUMNS, merge_slices, predict_volumes
from breastssl.metrics import froc_dbt


def dets(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["slice", "x1", "y1", "x2", "y2", "score"])


def test_neighbouring_overlapping_boxes_merge_into_one_volume_box():
    d = dets([
        (6, 10, 10, 30, 30, 0.9),   # seed: the best box, in the middle of the chain
        (5, 11, 9, 31, 29, 0.8),    # neighbours overlapping in 2D
        (7, 9, 11, 29, 31, 0.7),
        (8, 10, 10, 30, 30, 0.4),   # the chain goes on
        (6, 12, 12, 32, 32, 0.5),   # same slice, overlapping: suppressed (2D NMS)
        (10, 10, 10, 30, 30, 0.6),  # two slices after the chain's end: a separate lesion
        (6, 60, 60, 80, 80, 0.3),   # same slices, elsewhere in 2D: separate
    ])  # fmt: skip
    out = merge_slices(d, iou_thresh=0.3, max_gap=1)
    assert list(out.columns) == ["X", "Y", "Width", "Height", "Z", "Depth", "Score"]
    assert out[["Z", "Depth"]].values.tolist() == [[5, 4], [10, 1], [6, 1]]
    np.testing.assert_allclose(out["Score"], [0.9, 0.6, 0.3])
    np.testing.assert_allclose(out.iloc[0][["X", "Y", "Width", "Height"]].astype(float), [10, 10, 20, 20])


def test_a_gap_joins_with_max_gap_2_and_empty_input_is_empty():
    d = dets([(3, 0, 0, 10, 10, 0.9), (5, 0, 0, 10, 10, 0.8), (9, 0, 0, 10, 10, 0.7)])
    assert merge_slices(d, max_gap=1)[["Z", "Depth"]].values.tolist() == [[3, 1], [5, 1], [9, 1]]
    assert merge_slices(d, max_gap=2)[["Z", "Depth"]].values.tolist() == [[3, 3], [9, 1]]
    assert len(merge_slices(dets([]))) == 0


class FixedDetector(nn.Module):
    """Returns one box at (8, 8)–(16, 16), score 0.5 + slice/100, on slices 2–4 of every stack."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> dict:
        out = []
        for k in range(x.shape[0]):
            z = int(x[k, 0, 0, 0].item())
            if 2 <= z <= 4:
                out.append({"boxes": torch.tensor([[8.0, 8.0, 16.0, 16.0]]), "scores": torch.tensor([0.5 + z / 100])})
            else:
                out.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0)})
        return {"detections": out}


def test_predict_volumes_gives_bcs_dbt_rows_in_stored_pixels_that_froc_dbt_reads():
    stack = np.zeros((8, 32, 32), np.float32) + np.arange(8, dtype=np.float32)[:, None, None]
    row = {"patient_id": "p1", "exam_id": "e1", "laterality": "L", "view": "CC", "image_id": "e1-LCC"}
    pred = predict_volumes(FixedDetector(), [(row, stack)], scale=lambda r: (2.0, 4.0))
    assert list(pred.columns) == PRED_COLUMNS and len(pred) == 1
    r = pred.iloc[0]
    assert (r["StudyUID"], r["View"], r["Z"], r["Depth"]) == ("e1", "lcc", 2, 3)
    np.testing.assert_allclose([r["X"], r["Y"], r["Width"], r["Height"], r["Score"]], [4, 2, 4, 2, 0.54])
    boxes = pd.DataFrame({"StudyUID": ["e1"], "View": ["lcc"], "Slice": [3], "X": [4], "Y": [2], "Width": [4]}
                         | {"Height": [2], "VolumeSlices": [8]})  # fmt: skip
    res = froc_dbt(pred, boxes, pd.DataFrame({"StudyUID": ["e1"], "View": ["lcc"]}))
    assert res["mean_sensitivity_positive"] == 1.0
