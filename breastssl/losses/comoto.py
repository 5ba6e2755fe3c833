"""CoMoTo's lesion points and losses (seed 003; DESIGN §5.4): LsKD, ImPA, and the image-level KD baseline.

Lesion points. For each ground-truth box (x1, y1, x2, y2) in input pixels, 9 locations in this order::

    0 (x1, y1)  1 (x2, y1)  2 (x1, y2)  3 (x2, y2)   corners
    4 (cx, cy)                                      centre
    5 (cx, y1)  6 (cx, y2)  7 (x1, cy)  8 (x2, cy)   edge midpoints: top, bottom, left, right

are sampled on the C5 map by **bilinear** interpolation at their exact positions (as RoIAlign does), never rounded
to a cell. Pixel x maps to feature column x / stride − 0.5 (feature cell j covers pixels [j·s, (j+1)·s) and its
value sits at the cell centre), clamped to the map (border padding). Per image the box vectors are averaged, then
over the images that have boxes → (C, 9). Bilinear sampling cannot invent structure finer than a cell: a box must
span several C5 cells for its 9 vectors to differ, which is why the small-image demo dilates C5 (retinanet
``dilate_c5``: stride 4, so a 12-px box spans 3 cells instead of 1.5).

LsKD (student DBT points s, teacher mammography points t, both (C, 9); P = Linear(9, 9) on s)::

    L = α·T² · mean_c KL( softmax(t_c / T) ‖ softmax(P(s)_c / T) )      (softmax over the 9 points)

computed as ``kl_div(log_softmax(P(s)/T), softmax(t/T), reduction="batchmean")`` over the C channel rows.
Paper defaults: T = 4, α = 2. :func:`point_entropy` is the mean entropy of softmax(t_c / T) (maximum log 9), logged
during training: at or near log 9 the teacher's points carry no spatial pattern for the student to match.

ImPA (teacher training; pos = lesion point vectors (N, C), neg = feature vectors at random locations outside
every box (M, C))::

    L = β · [ mean_{i≠j} relu(1 − cos(pos_i, pos_j)) + mean_{i,j} relu(cos(pos_i, neg_j)) ],   β = 2
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

N_POINTS = 9


def box_points(boxes: Tensor) -> Tensor:
    """(N, 4) xyxy boxes in pixels → (N, 9, 2) (x, y) locations, in the order of the module doc."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xs = torch.stack([x1, x2, x1, x2, cx, cx, cx, x1, x2], dim=-1)
    ys = torch.stack([y1, y1, y2, y2, cy, y1, y2, cy, cy], dim=-1)
    return torch.stack([xs, ys], dim=-1)


def sample_features(fmap: Tensor, points: Tensor, stride: float) -> Tensor:
    """Bilinear samples of one map. fmap (C, h, w); points (..., 2) (x, y) in pixels → (..., C)."""
    c, h, w = fmap.shape
    flat = points.reshape(-1, 2).to(fmap.dtype)
    # align_corners=False: −1 and +1 are the outer edges of the first and last cells, so pixel x sits at
    # normalised 2·x/(s·w) − 1, i.e. at feature column x/s − 0.5 measured between cell centres
    grid = torch.stack([2 * flat[:, 0] / (stride * w) - 1, 2 * flat[:, 1] / (stride * h) - 1], dim=-1)
    out = F.grid_sample(fmap[None], grid[None, None], mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0].T.reshape(*points.shape[:-1], c)


def box_point_vectors(fmap: Tensor, boxes: Tensor, stride: float) -> Tensor:
    """fmap (C, h, w), boxes (N, 4) → (N, C, 9): the 9 point vectors of every box."""
    return sample_features(fmap, box_points(boxes), stride).transpose(1, 2)


def lesion_points(fmaps: Tensor, boxes: list[Tensor], stride: float) -> Tensor | None:
    """fmaps (B, C, h, w), boxes[b] (N_b, 4) → (C, 9) mean over each image's boxes, then over images; None if no box."""
    per_image = [box_point_vectors(f, b, stride).mean(0) for f, b in zip(fmaps, boxes, strict=True) if len(b)]
    return torch.stack(per_image).mean(0) if per_image else None


def lskd_loss(
    student: Tensor, teacher: Tensor, proj: nn.Module, temperature: float = 4.0, alpha: float = 2.0
) -> Tensor:
    """student, teacher (C, 9) points → scalar α·T²·KL(teacher ‖ proj(student)) averaged over the C channels.

    Only ``student`` and ``proj`` receive gradient: the teacher points are detached.
    """
    log_p_student = F.log_softmax(proj(student) / temperature, dim=-1)
    p_teacher = F.softmax(teacher.detach() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    return alpha * temperature**2 * kl


def point_entropy(points: Tensor, temperature: float = 4.0) -> Tensor:
    """points (C, 9) → scalar mean over channels of the entropy of softmax(points_c / T) over the 9 points.

    The distribution LsKD matches (the teacher's, for the training log). Its maximum, log 9 ≈ 2.197, is reached
    when the 9 point vectors are equal (a box inside one feature cell), so the distance below log 9 says how
    much spatial structure within a lesion there is to distil. Detached: a diagnostic, never a loss.
    """
    p = F.softmax(points.detach().float() / temperature, dim=-1)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()


def image_kd_loss(student: Tensor, teacher: Tensor, temperature: float = 4.0, alpha: float = 2.0) -> Tensor:
    """Image-level KD baseline. student, teacher: C5 maps (B, C, h, w) of (unpaired) images → scalar.

    Each side is global-average-pooled and averaged over its batch → (C,); then α·T²·KL(softmax(t/T) ‖
    softmax(s/T)) over channels: the same KL, T and α as LsKD, on the whole image instead of the lesion points.
    """
    s = student.mean(dim=(0, 2, 3))
    t = teacher.detach().mean(dim=(0, 2, 3))
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1), reduction="sum")
    return alpha * temperature**2 * kl


def outside_box_locations(boxes: Tensor, grid: tuple[int, int], stride: float, k: int, generator=None) -> Tensor:
    """(k, 2) pixel (x, y) of random feature-cell centres outside every box (N, 4); fewer if fewer exist.

    grid = (h, w) of the feature map. Cells are drawn without replacement.
    """
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    centres = torch.stack([(xs.reshape(-1) + 0.5) * stride, (ys.reshape(-1) + 0.5) * stride], dim=-1)
    centres = centres.to(boxes.device if len(boxes) else "cpu")
    if len(boxes):
        b = boxes.to(centres.dtype)
        inside = (
            (centres[:, None, 0] >= b[None, :, 0])
            & (centres[:, None, 0] <= b[None, :, 2])
            & (centres[:, None, 1] >= b[None, :, 1])
            & (centres[:, None, 1] <= b[None, :, 3])
        ).any(1)
        centres = centres[~inside]
    order = torch.randperm(len(centres), generator=generator)[:k]
    return centres[order.to(centres.device)]


def impa_vectors(
    fmaps: Tensor, boxes: list[Tensor], stride: float, neg_per_image: int = 16, generator=None
) -> tuple[Tensor, Tensor]:
    """fmaps (B, C, h, w) → (positives (9·ΣN_b, C): every lesion point vector, negatives (M, C)).

    Negatives: ``neg_per_image`` random cells outside every box of each image (images without boxes too).
    """
    pos, neg = [], []
    for f, b in zip(fmaps, boxes, strict=True):
        if len(b):
            pos.append(sample_features(f, box_points(b), stride).reshape(-1, f.shape[0]))
        locs = outside_box_locations(b, tuple(f.shape[-2:]), stride, neg_per_image, generator)
        if len(locs):
            neg.append(sample_features(f, locs, stride))
    c = fmaps.shape[1]
    empty = fmaps.new_zeros(0, c)
    return (torch.cat(pos) if pos else empty), (torch.cat(neg) if neg else empty)


def impa_loss(pos: Tensor, neg: Tensor, beta: float = 2.0) -> Tensor:
    """pos (N, C), neg (M, C) → β·[mean_{i≠j} relu(1 − cos(p_i, p_j)) + mean relu(cos(p_i, n_j))]; 0 if N < 2."""
    if len(pos) < 2:
        return pos.sum() * 0.0 + neg.sum() * 0.0
    p = F.normalize(pos, dim=-1)
    cos_pp = p @ p.T
    off = ~torch.eye(len(p), dtype=torch.bool, device=p.device)
    align = F.relu(1 - cos_pp[off]).mean()
    sep = F.relu(p @ F.normalize(neg, dim=-1).T).mean() if len(neg) else pos.sum() * 0.0
    return beta * (align + sep)
