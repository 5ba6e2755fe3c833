"""Helpers of the CoMoTo tests: a tiny detector and tiny (paired) detection batches."""

from __future__ import annotations

import torch

from breastssl.models import create_model


def tiny_detector(seed: int, **kw) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("retinanet", **{"backbone": "tiny", "width": 4, **kw})


def det_batch(n: int = 3, size: tuple[int, int] = (48, 40), seed: int = 0, empty: bool = False) -> dict:
    """n images; images 0 and 1 hold lesion boxes (image 1 two of them), the others none."""
    g = torch.Generator().manual_seed(seed)
    boxes = [torch.zeros(0, 4) for _ in range(n)]
    if not empty:
        boxes[0] = torch.tensor([[8.0, 10.0, 20.0, 22.0]])
        boxes[1] = torch.tensor([[4.0, 4.0, 14.0, 12.0], [24.0, 26.0, 36.0, 40.0]])
    return {
        "image": torch.rand(n, 1, *size, generator=g),
        "boxes": boxes,
        "labels": [torch.zeros(len(b), dtype=torch.int64) for b in boxes],
        "index": torch.arange(n),
    }


def paired_batch(seed: int = 0, empty: bool = False) -> dict:
    """A DBT batch with an unpaired mammography batch of another size."""
    return {"dbt": det_batch(3, (48, 40), seed, empty), "mammo": det_batch(2, (56, 48), seed + 1, empty)}
