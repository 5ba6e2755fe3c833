"""Detection datasets for CoMoTo (seed 003): DBT slices with lesion boxes, mammograms with boxes, and the pair.

- :func:`dbt_detection_table`: training slices of fully annotated DBT stacks. Positives: key slice ± halfwidth
  of every lesion (benign and malignant: "lesion vs background", as BCS-DBT boxes), with the boxes whose key
  slice is within ± halfwidth. Negatives: every ``neg_stride``-th slice of normal stacks (no boxes). Slices of
  lesion stacks far from a key slice are left out: the lesion is blurred there, neither clearly present nor absent.
- :func:`mammo_detection_table`: every mammogram of a split with the boxes of all its lesions (the teacher's
  plentiful, fully boxed source modality).
- :class:`DetectionDataset`: one row → ``image`` (1, H, W) in [0, 1] resized to ``size``, ``boxes`` (N, 4)
  xyxy in resized pixels, ``labels`` (N,) zeros (one class: lesion), ``index``. Optional horizontal flip, or
  the full slice augmentation with the boxes following (``transforms.augment_detection``), seeded by (seed, epoch,
  index) so a resumed run draws the same ones. (``train.augment_on=device``: neither; the loop augments each batch,
  ``device_augment.DetectionBatchAugment``.)
- :class:`PairedDataset`: each DBT sample with an UNPAIRED mammogram drawn by (seed, epoch, index).
- :func:`detection_collate`: images stacked, boxes/labels kept as lists (detections differ in count).
- :func:`subsample_stacks`: the low-data setting (a nested fraction of patients, stratified by lesion/normal).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .dbt_slices import load_stack
from .transforms import AugmentConfig, augment_detection

SampleKey = int | tuple[int, int]


def _xyxy(les: pd.DataFrame) -> np.ndarray:
    """lesions (x, y, w, h) → (N, 4) float32 xyxy."""
    xy = les[["x", "y"]].to_numpy(np.float32)
    wh = les[["w", "h"]].to_numpy(np.float32)
    return np.concatenate([xy, xy + wh], axis=1).reshape(-1, 4)


def dbt_detection_table(
    manifest: pd.DataFrame,
    lesions: pd.DataFrame,
    split: str = "train",
    halfwidth: int = 1,
    neg_stride: int = 4,
    annotation: Sequence[str] = ("full",),
) -> pd.DataFrame:
    """Training slices: columns image_id, patient_id, slice, boxes (list of xyxy in stored pixels), positive."""
    man = manifest[(manifest["split"] == split) & manifest["annotation"].isin(list(annotation))]
    les = lesions.assign(image_id=lesions["image_id"].astype(str))
    rows: list[dict[str, Any]] = []
    for r in man.to_dict("records"):
        image_id, depth = str(r["image_id"]), int(r["n_slices"])
        mine = les[les["image_id"] == image_id]
        if len(mine):
            keys = sorted(
                {min(max(int(k) + d, 0), depth - 1) for k in mine["slice"] for d in range(-halfwidth, halfwidth + 1)}
            )
            for z in keys:
                near = mine[(mine["slice"].astype(int) - z).abs() <= halfwidth]
                rows.append({"image_id": image_id, "patient_id": r["patient_id"], "slice": z, "boxes": _xyxy(near)})
        elif str(r["breast_label"]) == "normal":
            for z in range(0, depth, neg_stride):
                rows.append({"image_id": image_id, "patient_id": r["patient_id"], "slice": z, "boxes": _xyxy(mine)})
    out = pd.DataFrame(rows, columns=["image_id", "patient_id", "slice", "boxes"])
    out["positive"] = out["boxes"].map(len) > 0
    return out


def mammo_detection_table(manifest: pd.DataFrame, lesions: pd.DataFrame, split: str = "train") -> pd.DataFrame:
    """One row per mammogram of ``split``: image_id, patient_id, slice (0), boxes, positive."""
    man = manifest[manifest["split"] == split]
    les = lesions.assign(image_id=lesions["image_id"].astype(str))
    groups = {k: g for k, g in les.groupby("image_id")}
    rows = [
        {"image_id": str(i), "patient_id": p, "slice": 0, "boxes": _xyxy(groups.get(str(i), les.iloc[:0]))}
        for i, p in zip(man["image_id"], man["patient_id"], strict=True)
    ]
    out = pd.DataFrame(rows, columns=["image_id", "patient_id", "slice", "boxes"])
    out["positive"] = out["boxes"].map(len) > 0
    return out


def subsample_stacks(table: pd.DataFrame, fraction: float, seed: int = 0) -> pd.DataFrame:
    """Rows of a ``fraction`` of the patients (at least one lesion patient), stratified by lesion / no lesion.

    Nested: for one seed, the patients kept at a smaller fraction are kept at every larger one.
    """
    if fraction >= 1.0:
        return table
    pos = table.groupby("patient_id")["positive"].any()
    keep: list[Any] = []
    rng = np.random.default_rng(seed)
    for flag in (True, False):
        ids = np.array(sorted(pos.index[pos == flag]))
        order = ids[rng.permutation(len(ids))]
        keep.extend(order[: max(int(round(fraction * len(ids))), 1 if flag and len(ids) else 0)])
    return table[table["patient_id"].isin(keep)].reset_index(drop=True)


class DetectionDataset(Dataset):
    """Rows of a detection table read from a manifest's files, resized to ``size`` = (H, W); see module doc."""

    def __init__(
        self,
        table: pd.DataFrame,
        manifest: pd.DataFrame,
        root: str | Path,
        size: tuple[int, int],
        hflip: bool = False,
        seed: int = 0,
        augment: AugmentConfig | None = None,
    ) -> None:
        """``augment``: the full augmentation (replaces ``hflip``); None = ``hflip`` alone."""
        self.table = table.reset_index(drop=True)
        self.augment = augment if augment is not None and augment.enabled else None
        self.rows = {str(r["image_id"]): r for r in manifest.to_dict("records")}
        self.root, self.size, self.hflip, self.seed = Path(root), tuple(size), hflip, seed
        self._cache: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.table)

    def stack(self, image_id: str) -> np.ndarray:
        """(D, H, W) float32 in [0, 1] at ``size`` (kept in memory: the demo sets are small)."""
        if image_id not in self._cache:
            self._cache[image_id] = load_stack(self.rows[image_id], self.root, self.size)
        return self._cache[image_id]

    def scale(self, image_id: str) -> tuple[float, float]:
        """(sx, sy): resized pixels per stored pixel."""
        r = self.rows[image_id]
        return self.size[1] / float(r["columns"]), self.size[0] / float(r["rows"])

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        row = self.table.iloc[i]
        image_id = str(row["image_id"])
        image = self.stack(image_id)[int(row["slice"])]
        sx, sy = self.scale(image_id)
        boxes = np.asarray(row["boxes"], np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, epoch, i])
            image, boxes, _ = augment_detection(image, boxes, rng, self.augment)
        elif self.hflip and np.random.default_rng([self.seed, epoch, i]).random() < 0.5:
            image = image[:, ::-1]
            boxes = np.stack([self.size[1] - boxes[:, 2], boxes[:, 1], self.size[1] - boxes[:, 0], boxes[:, 3]], 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, np.float32))[None],
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
            "labels": torch.zeros(len(boxes), dtype=torch.int64),
            "index": torch.tensor(i),
        }


class PairedDataset(Dataset):
    """DBT sample i with an unpaired mammogram drawn by (seed, epoch, i): ``{"dbt": ..., "mammo": ...}``."""

    def __init__(self, dbt: Dataset, mammo: Dataset, seed: int = 0) -> None:
        self.dbt, self.mammo, self.seed = dbt, mammo, seed

    def __len__(self) -> int:
        return len(self.dbt)

    def __getitem__(self, key: SampleKey) -> dict[str, dict[str, Tensor]]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        j = int(np.random.default_rng([self.seed, epoch, i, 1]).integers(len(self.mammo)))
        return {"dbt": self.dbt[(epoch, i)], "mammo": self.mammo[(epoch, j)]}


def detection_collate(items: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack images, keep per-image boxes/labels as lists; nested dicts (a paired batch) collate per key."""
    first = items[0]
    if "image" not in first:
        return {k: detection_collate([it[k] for it in items]) for k in first}
    return {
        "image": torch.stack([it["image"] for it in items]),
        "boxes": [it["boxes"] for it in items],
        "labels": [it["labels"] for it in items],
        "index": torch.stack([it["index"] for it in items]),
    }


class EpochKeyedSampler:
    """Wraps a batch sampler so that it yields (epoch, index) keys: per-epoch flips and mammography pairings."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.epoch = inner, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.inner:
            yield [(self.epoch, int(i)) for i in batch]

    def __len__(self) -> int:
        return len(self.inner)


def targets_of(batch: Mapping[str, Any]) -> list[dict[str, Tensor]]:
    """torchvision targets from a collated detection batch: [{"boxes": (N, 4), "labels": (N,)}, ...]."""
    return [{"boxes": b, "labels": lab} for b, lab in zip(batch["boxes"], batch["labels"], strict=True)]
