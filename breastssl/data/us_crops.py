"""Nodule crops: the detector's boxes (with a margin) become the recognition network's inputs (seed 004).

The paper's doctors drew boxes with "approximately 10 pixels" of background around the nodule; the
crop adds ``margin`` × the box size on each side (at least ``min_margin`` pixels), clipped to the frame,
then resizes to ``size`` × ``size`` and standardises each crop (zero mean, unit variance): the Gaussian
input noise of the mean teacher (0.15) is then relative to the crop's contrast, and site-level gain
differences do not reach the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .preprocess import resize


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boxes (4,) x0, y0, x1, y1 (the paper's "ASC")."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def expand_box(
    box: Sequence[float], shape: tuple[int, int], margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """Box (4,) x0, y0, x1, y1 grown by ``max(margin × side, min_margin)`` per side, clipped to (H, W); integers."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = max(margin * (x1 - x0), min_margin), max(margin * (y1 - y0), min_margin)
    h, w = shape
    out = np.array([np.floor(x0 - mx), np.floor(y0 - my), np.ceil(x1 + mx), np.ceil(y1 + my)])
    out = np.clip(out, 0, [w, h, w, h])
    if out[2] - out[0] < 2:  # degenerate after clipping: keep at least 2 px
        out[0], out[2] = max(0, min(out[0], w - 2)), max(0, min(out[0], w - 2)) + 2
    if out[3] - out[1] < 2:
        out[1], out[3] = max(0, min(out[1], h - 2)), max(0, min(out[1], h - 2)) + 2
    return out.astype(np.int64)


def crop(
    frame: np.ndarray, box: Sequence[float], size: int, margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """A standardised (size, size) float32 crop of a (H, W) frame around ``box`` (see the module doc)."""
    x0, y0, x1, y1 = expand_box(box, frame.shape[:2], margin, min_margin)
    patch = resize(frame[y0:y1, x0:x1], (size, size))
    return ((patch - patch.mean()) / (patch.std() + 1e-6)).astype(np.float32)


@torch.no_grad()
def detect(
    detector: nn.Module, frames: Mapping[str, np.ndarray], ids: Sequence[str], batch_size: int = 8
) -> pd.DataFrame:
    """The top-scoring box of each frame: image_id, x0, y0, x1, y1, score (whole frame, score 0, if none)."""
    was = detector.training
    detector.eval()
    device = next(detector.parameters()).device
    rows: list[dict[str, Any]] = []
    ids = list(ids)
    for i in range(0, len(ids), batch_size):
        chunk = ids[i : i + batch_size]
        out = detector([torch.from_numpy(frames[k])[None].to(device) for k in chunk])
        for k, boxes, scores in zip(chunk, out["boxes"], out["scores"], strict=True):
            if len(scores):
                j = int(scores.argmax())
                b, s = boxes[j].cpu().numpy(), float(scores[j])
            else:
                h, w = frames[k].shape
                b, s = np.array([0.0, 0.0, w, h]), 0.0
            rows.append({"image_id": k, "x0": b[0], "y0": b[1], "x1": b[2], "y1": b[3], "score": s})
    detector.train(was)
    return pd.DataFrame(rows, columns=["image_id", "x0", "y0", "x1", "y1", "score"])


def make_crops(
    frames: Mapping[str, np.ndarray], boxes: pd.DataFrame, size: int = 32, margin: float = 0.15, min_margin: float = 4.0
) -> np.ndarray:
    """(N, 1, size, size) crops, one per row of ``boxes`` (image_id, x0, y0, x1, y1)."""
    out = np.zeros((len(boxes), 1, size, size), dtype=np.float32)
    for i, r in enumerate(boxes.itertuples(index=False)):
        out[i, 0] = crop(frames[str(r.image_id)], (r.x0, r.y0, r.x1, r.y1), size, margin, min_margin)
    return out


@dataclass(frozen=True)
class CropAugment:
    """The random transform of one view of a crop: left-right flip, translation, contrast (the paper's "image
    flipping, random change in brightness"; the crops are standardised, so brightness acts as contrast).

    Each call of :meth:`draw` is a fresh, independent draw from the global torch RNG: the engine seeds it
    (``seed_everything``) and checkpoints it, so a run, and a run resumed in-process, repeat the same views.
    """

    flip: bool = True
    translate: int = 2  # max shift in pixels per axis (mean-teacher reference on 32x32: 2), reflect-padded
    contrast: float = 0.1  # gain drawn from U(1 - contrast, 1 + contrast)

    def draw(self) -> Tensor:
        """Parameters (4,) float: flip (0/1), dy, dx (pixels), gain."""
        flip = float(self.flip and bool(torch.rand(()) < 0.5))
        dy, dx = torch.randint(-self.translate, self.translate + 1, (2,)).tolist() if self.translate else (0, 0)
        gain = 1.0 + self.contrast * (2.0 * float(torch.rand(())) - 1.0)
        return torch.tensor([flip, dy, dx, gain])

    @staticmethod
    def apply(x: Tensor, params: Tensor) -> Tensor:
        """``x`` (C, S, S) transformed by ``params`` (4,) from :meth:`draw`: flip, then shift, then gain."""
        flip, dy, dx, gain = params.tolist()
        if flip:
            x = x.flip(-1)
        dy, dx = int(dy), int(dx)
        if dy or dx:
            # reflect padding: a shifted crop shows tissue-like texture at its edge, not a black border
            t = max(abs(dy), abs(dx))
            padded = F.pad(x[None], (t, t, t, t), mode="reflect")[0]
            h, w = x.shape[-2:]
            x = padded[..., t - dy : t - dy + h, t - dx : t - dx + w]
        return x * gain


class CropBatchAugment:
    """The loop's ``batch_transform`` for crops (``train.augment_on=device``): the batch's plain ``image`` crops
    (B, C, S, S) become ``views`` independently augmented views, ``image`` (and ``image_teacher`` with views=2).

    :class:`CropAugment`'s transforms on the whole batch on its device, with the same parameter distributions;
    the parameters come from a CPU generator seeded by (seed, step, rank) (``device_augment.step_generator``), so
    a resumed run augments step s as the uninterrupted one did. For a given parameter row the output equals
    ``CropAugment.apply``'s exactly (tests).
    """

    def __init__(self, transform: CropAugment, views: int, seed: int, rank: int = 0) -> None:
        if views not in (1, 2):
            raise ValueError(f"views must be 1 (student) or 2 (student + teacher), not {views}")
        self.transform, self.views, self.seed, self.rank = transform, views, int(seed), int(rank)

    def draw(self, n: int, generator: torch.Generator) -> Tensor:
        """(n, 4) parameter rows as :meth:`CropAugment.draw` gives one: flip (0/1), dy, dx, gain."""
        t = self.transform
        flip = (torch.rand(n, generator=generator) < 0.5) & t.flip
        shift = torch.randint(-t.translate, t.translate + 1, (n, 2), generator=generator)
        gain = 1.0 + t.contrast * (2.0 * torch.rand(n, generator=generator) - 1.0)
        return torch.cat([flip.float()[:, None], shift.float(), gain[:, None]], dim=1)

    @staticmethod
    def apply(x: Tensor, params: Tensor) -> Tensor:
        """(B, C, S, S) crops transformed by (B, 4) ``params``: flip, then shift (reflect-padded), then gain."""
        p = params.to(x.device)
        x = torch.where(p[:, 0].bool().view(-1, 1, 1, 1), x.flip(-1), x)
        dy, dx = p[:, 1].long(), p[:, 2].long()
        t = int(torch.cat([dy.abs(), dx.abs()]).max()) if len(p) else 0
        if t:
            # one reflect padding of the widest shift serves every sample: reflect padding by t' < t gives the same
            # values where a shift by at most t' reads
            b, c, h, w = x.shape
            padded = F.pad(x, (t, t, t, t), mode="reflect")
            rows = torch.arange(h, device=x.device) + t - dy[:, None]  # (B, H): output row i reads padded row
            cols = torch.arange(w, device=x.device) + t - dx[:, None]  # (B, W)
            bi = torch.arange(b, device=x.device).view(-1, 1, 1, 1)
            ci = torch.arange(c, device=x.device).view(1, -1, 1, 1)
            x = padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
        return x * p[:, 3].to(x.dtype).view(-1, 1, 1, 1)

    def __call__(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        from .device_augment import step_generator

        gen = step_generator(self.seed, step, self.rank)
        x = batch["image"]
        out = dict(batch)
        for key in ("image", "image_teacher")[: self.views]:  # the student's view, then the teacher's
            out[key] = self.apply(x, self.draw(len(x), gen))
        return out


class CropDataset(Dataset):
    """Nodule crops for the recognition network: ``{"image": (1, S, S), "label", "sup_cls", "index"}``, plus
    ``"image_teacher"`` (1, S, S) with ``views=2``.

    ``labels`` (N,) class index (any value where unlabelled), ``labelled`` (N,) bool. With ``augment`` each view
    gets its own :class:`CropAugment` draw (flip, shift and contrast drawn separately), so the mean teacher's
    student and teacher see two independently augmented views, as in the mean-teacher reference; the Gaussian
    input noise is the strategy's and is also drawn per view.
    """

    def __init__(
        self,
        crops: np.ndarray,
        labels: np.ndarray,
        labelled: np.ndarray,
        augment: bool = True,
        views: int = 1,
        transform: CropAugment | None = None,
    ) -> None:
        if not (len(crops) == len(labels) == len(labelled)):
            raise ValueError(
                f"crops {crops.shape}, labels {np.shape(labels)}, labelled {np.shape(labelled)} differ in length"
            )
        if views not in (1, 2):
            raise ValueError(f"views must be 1 (student) or 2 (student + teacher), not {views}")
        self.crops = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.float32))
        self.labelled = torch.as_tensor(np.asarray(labelled, dtype=np.float32))
        self.augment, self.views_per_item = augment, views
        self.transform = transform or CropAugment()

    def __len__(self) -> int:
        return len(self.crops)

    def views(self, i: int) -> tuple[list[Tensor], Tensor]:
        """The views of crop ``i`` (each (1, S, S)) and their parameters (V, 4) (identity rows without augment)."""
        identity = torch.tensor([0.0, 0.0, 0.0, 1.0])
        params = [self.transform.draw() if self.augment else identity for _ in range(self.views_per_item)]
        return [CropAugment.apply(self.crops[i], p) for p in params], torch.stack(params)

    def __getitem__(self, i: int) -> dict[str, Any]:
        images, _ = self.views(i)
        item = {"image": images[0], "label": self.labels[i], "sup_cls": self.labelled[i], "index": i}
        if len(images) > 1:
            item["image_teacher"] = images[1]
        return item
