"""The 9 lesion points and their bilinear sampling on hand-built boxes and feature maps (exact values)."""

from __future__ import annotations

import torch

from breastssl.losses.comoto import (
    box_point_vectors,
    box_points,
    impa_vectors,
    lesion_points,
    outside_box_locations,
    sample_features,
)


def coordinate_map(h: int = 4, w: int = 4) -> torch.Tensor:
    """(2, h, w): channel 0 = column index j, channel 1 = row index i."""
    i, j = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return torch.stack([j, i])


def test_box_points_order():
    pts = box_points(torch.tensor([[4.0, 4.0, 20.0, 12.0]]))
    xs = [4, 20, 4, 20, 12, 12, 12, 4, 20]
    ys = [4, 4, 12, 12, 8, 4, 12, 8, 8]
    assert pts.shape == (1, 9, 2)
    assert pts[0, :, 0].tolist() == xs and pts[0, :, 1].tolist() == ys


def test_bilinear_sampling_on_a_coordinate_map_stride_8():
    f = coordinate_map()
    # pixel x sits at feature column x/8 - 0.5; outside the map the border value is used
    pts = torch.tensor([[4.0, 4.0], [20.0, 12.0], [6.0, 8.0], [0.0, 0.0], [40.0, 31.0]])
    got = sample_features(f, pts, stride=8)
    want = torch.tensor([[0.0, 0.0], [2.0, 1.0], [0.25, 0.5], [0.0, 0.0], [3.0, 3.0]])
    torch.testing.assert_close(got, want)


def test_box_point_vectors_exact():
    v = box_point_vectors(coordinate_map(), torch.tensor([[4.0, 4.0, 20.0, 12.0]]), stride=8)
    assert v.shape == (1, 2, 9)  # (boxes, C, 9)
    torch.testing.assert_close(v[0, 0], torch.tensor([0.0, 2, 0, 2, 1, 1, 1, 0, 2]))
    torch.testing.assert_close(v[0, 1], torch.tensor([0.0, 0, 1, 1, 0.5, 0, 1, 0.5, 0.5]))


def test_lesion_points_average_boxes_then_images_and_skip_images_without_boxes():
    f = coordinate_map(4, 4)
    fmaps = torch.stack([f, f + 10, f + 100])
    a, b, c = [4.0, 4.0, 20.0, 12.0], [12.0, 12.0, 28.0, 28.0], [4.0, 12.0, 12.0, 20.0]
    boxes = [torch.tensor([a, b]), torch.tensor([c]), torch.zeros(0, 4)]
    got = lesion_points(fmaps, boxes, stride=8)
    va, vb = box_point_vectors(f, torch.tensor([a, b]), 8)
    vc = box_point_vectors(f + 10, torch.tensor([c]), 8)[0]
    torch.testing.assert_close(got, ((va + vb) / 2 + vc) / 2)
    assert got.shape == (2, 9)
    assert lesion_points(fmaps[:1], [torch.zeros(0, 4)], 8) is None


def test_negatives_lie_outside_every_box():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]])  # covers cells (0,0), (0,1), (1,0), (1,1) of a 4×4 grid, stride 8
    locs = outside_box_locations(boxes, (4, 4), 8, k=100, generator=torch.Generator().manual_seed(0))
    assert len(locs) == 12
    assert not ((locs[:, 0] <= 16) & (locs[:, 1] <= 16)).any()
    pos, neg = impa_vectors(coordinate_map()[None], [boxes], 8, neg_per_image=5)
    assert pos.shape == (9, 2) and neg.shape == (5, 2)
