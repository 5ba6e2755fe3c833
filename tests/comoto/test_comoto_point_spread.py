"""The 9 lesion points must be 9 different feature vectors at the demo's resolution (the "collapse" defect).

At 128×96 a typical synthetic lesion box is ~12 px. On a stride-8 C5 it spans 1.5 cells and its 9 bilinear samples
are nearly one vector, so the teacher's 9-point distribution is nearly uniform and LsKD has little to match. The
demo dilates C5 to stride 4 (3 cells per box). These tests pin the sampling convention, the demo's geometry, and
how much of a lesion's pixel-level structure the 9 points keep at the demo's C5 stride.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from breastssl.config import load_config
from breastssl.experiments.comoto import ComotoExperimentConfig, _model
from breastssl.losses.comoto import box_point_vectors, point_entropy, sample_features

LOG9 = math.log(9)
BOX = torch.tensor([[40.0, 50.0, 52.0, 62.0]])  # a typical 12-px lesion box at 128×96


def demo_config() -> ComotoExperimentConfig:
    return load_config(ComotoExperimentConfig, "configs/comoto_demo.yaml", [])


def pixel_coordinate_map(h: int, w: int, stride: float) -> torch.Tensor:
    """(2, h, w): channel 0 = the pixel x of each cell's centre, (j + 0.5)·stride; channel 1 = its pixel y."""
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([(j + 0.5) * stride, (i + 0.5) * stride])


def lesion_field(h: int = 128, w: int = 96) -> torch.Tensor:
    """(7, h, w) pixel-level features with spatial structure at lesion scale around BOX: three Gaussian blobs
    centred on the box (σ = 3, 4, 6 px), two ramps and two 16-px-period waves; amplitude ~4 = the LsKD T."""
    yy, xx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    cx, cy = (BOX[0, 0] + BOX[0, 2]) / 2, (BOX[0, 1] + BOX[0, 3]) / 2
    blobs = [torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2)) for s in (3.0, 4.0, 6.0)]
    waves = [xx / 12, yy / 12, torch.cos(2 * math.pi * xx / 16), torch.sin(2 * math.pi * yy / 16)]
    return torch.stack(blobs + waves) * 4


def nine_vectors(stride: int) -> torch.Tensor:
    """(C, 9): BOX's 9 point vectors on the field average-pooled to a C5 of this stride (1 = the pixels)."""
    field = lesion_field()
    fmap = F.avg_pool2d(field[None], stride)[0] if stride > 1 else field
    return box_point_vectors(fmap, BOX, stride)[0]


def spread(v: torch.Tensor) -> float:
    """Mean distance between the 9 point vectors of v (C, 9), over the 72 ordered pairs of distinct points."""
    return float(torch.cdist(v.T, v.T).sum() / 72)


def test_sampling_returns_the_pixel_coordinate_on_a_map_whose_value_is_it():
    # a cell's value sits at its centre: a map holding each centre's pixel coordinates, sampled bilinearly at a
    # pixel between the first and last centres, returns that pixel's coordinates exactly, at any stride
    for stride in (4.0, 8.0):
        fmap = pixel_coordinate_map(6, 5, stride)
        pts = torch.tensor([[stride / 2, stride / 2], [13.0, 9.0], [17.5, 21.25], [4.5 * stride, 5.5 * stride]])
        torch.testing.assert_close(sample_features(fmap, pts, stride), pts)
    # a 12-px box at stride 4: its corners, centre and edge midpoints come back where they are
    got = box_point_vectors(pixel_coordinate_map(32, 24, 4.0), BOX, 4.0)[0]  # (2, 9)
    torch.testing.assert_close(got[0], torch.tensor([40.0, 52, 40, 52, 46, 46, 46, 40, 52]))
    torch.testing.assert_close(got[1], torch.tensor([50.0, 50, 62, 62, 56, 50, 62, 56, 56]))


def test_the_demo_c5_makes_a_typical_box_span_three_cells():
    cfg = demo_config()
    model = _model(cfg).eval()
    with torch.no_grad():
        c5 = model.forward_features(torch.rand(1, 1, *cfg.size))[-1]
    assert model.stride == 4 and c5.shape[-2:] == (cfg.size[0] // 4, cfg.size[1] // 4)
    assert (BOX[0, 2] - BOX[0, 0]) / model.stride >= 3
    # the dilated detector has the undilated one's parameters (same shapes), only C5 is finer
    plain = _model(cfg.model_copy(update={"dilate_c5": False}))
    assert plain.stride == 8
    assert [p.shape for p in plain.parameters()] == [p.shape for p in model.parameters()]


def test_the_nine_points_of_a_12px_box_differ_at_the_demo_stride():
    stride = _model(demo_config()).stride
    truth, demo, coarse = nine_vectors(1), nine_vectors(stride), nine_vectors(8)
    # the 9 vectors are far apart: most of the pixel-level spread survives the demo's C5, not stride 8's
    assert spread(demo) >= 0.8 * spread(truth)
    assert spread(coarse) < 0.7 * spread(truth)
    # so the teacher-point distribution LsKD matches (T = 4) stays clearly below its maximum log 9
    gap_truth = LOG9 - point_entropy(truth, 4.0).item()
    assert LOG9 - point_entropy(demo, 4.0).item() >= 0.6 * gap_truth
    assert LOG9 - point_entropy(coarse, 4.0).item() < 0.4 * gap_truth


def test_point_entropy_by_hand():
    flat = torch.ones(3, 9)
    assert math.isclose(point_entropy(flat, 4.0).item(), LOG9, rel_tol=1e-6)
    v = torch.tensor([[4.0] + [0.0] * 8])  # one point e^1 against eight of e^0 at T = 4
    p = torch.softmax(v[0] / 4, 0)
    want = -float((p * p.log()).sum())
    assert math.isclose(point_entropy(v, 4.0).item(), want, rel_tol=1e-6)
    assert point_entropy(v, 1.0).item() < point_entropy(v, 4.0).item() < LOG9
