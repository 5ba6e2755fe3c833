"""DBT slice sampling (DESIGN §5.1, SelectiveKD paper §2.1): which slices train, with which labels.

Roles of a slice in :func:`slice_table`:

- ``annotated_pos``: key slice ± ``pos_halfwidth`` of a malignant lesion in a fully annotated cancer stack;
  label 1, its lesion mask supervises the segmentation head.
- ``annotated_neg``: every ``neg_stride``-th slice of a fully annotated cancer-negative stack; label 0,
  empty mask. With ``weak_labels`` (the * settings) a weakly labelled (``annotation=weak``)
  cancer-negative breast counts the same way (paper §2.1: every slice of a confirmed negative breast
  is negative).
- ``weak_pos`` (* settings only): every slice of a cancer-positive breast without a slice label, i.e.
  ``annotation=weak`` stacks of cancer breasts and the non-key slices of annotated cancer stacks;
  y_breast = 1.
- ``unannotated``: without weak labels, every slice that carries no slice label: all slices of weak,
  report and unannotated stacks, and the non-key slices of annotated cancer stacks. With
  ``weak_labels`` the stacks without a usable breast label (``report``, ``none``, ``weak`` with an
  ``unknown`` label) are left out of training (selection then runs only inside cancer-positive
  breasts, and T = 0.1 is meant for those).

Only ``annotation=weak`` rows give a breast label (DESIGN §3): a ``none`` or ``report`` row's
``breast_label`` is never read, so outcomes filled in for every row of a hospital manifest cannot leak
into training. An ``annotation=full`` row needs a known breast label (cancer, benign or normal).

:func:`training_table` turns roles, a strategy's choices and the teacher's selection into the
per-slice flags of the loss (``sup_cls``, ``sup_seg``, ``kd``) and a batch ``group``.
:class:`ComposedBatchSampler` draws batches with a fixed annotated : weak : KD-only composition.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from ..config import Section
from ..errors import DataError

ROLES = ("annotated_pos", "annotated_neg", "weak_pos", "unannotated")
POOL_ROLES = ("weak_pos", "unannotated")
GROUPS = ("annotated", "weak", "kd_only")


def slice_table(
    manifest: pd.DataFrame,
    lesions: pd.DataFrame | None,
    *,
    weak_labels: bool,
    neg_stride: int = 2,
    pos_halfwidth: int = 1,
    weak_negatives: str = "negative",
) -> pd.DataFrame:
    """One row per candidate slice: image_id, exam_id, laterality, vendor, slice, role, label (NaN = none).

    manifest: DBT rows (``n_slices``, ``annotation``, ``breast_label``); lesions: key slices (``slice``)
    and ``lesion_class`` of the annotated stacks. weak_negatives (with ``weak_labels``): ``negative`` = a
    weakly labelled cancer-negative breast is an annotated negative stack (the paper); ``kd`` = its slices
    are pool slices (``unannotated``: KD only, or selected), a one-change ablation of that rule.
    """
    if weak_negatives not in {"negative", "kd"}:
        raise ValueError(f"weak_negatives must be 'negative' or 'kd', got {weak_negatives!r}")
    if neg_stride < 1 or pos_halfwidth < 0:
        raise ValueError(f"neg_stride must be >= 1 and pos_halfwidth >= 0, got {neg_stride}, {pos_halfwidth}")
    keys: dict[str, set[int]] = {}
    if lesions is not None and len(lesions):
        malignant = lesions[lesions["lesion_class"].astype(str) == "malignant"]
        for image_id, z in zip(malignant["image_id"].astype(str), malignant["slice"].astype(int), strict=True):
            keys.setdefault(image_id, set()).add(z)
    parts = []
    for row in manifest.to_dict("records"):
        image_id, n = str(row["image_id"]), int(row["n_slices"])
        annotation, label = str(row["annotation"]), str(row["breast_label"])
        z = np.arange(n)
        role = np.full(n, "", dtype=object)
        # a breast label trains only from an annotation=weak row (DESIGN §3): none/report rows never give one,
        # whatever their breast_label column holds (a hospital manifest may carry outcomes for every row)
        weak_label = weak_labels and annotation == "weak"
        if annotation == "full" and label not in {"cancer", "benign", "normal"}:
            raise DataError(f"{image_id}: annotation=full needs breast_label cancer, benign or normal, got {label!r}")
        if annotation == "full" and label == "cancer":
            near = {k + d for k in keys.get(image_id, ()) for d in range(-pos_halfwidth, pos_halfwidth + 1)}
            if not near:
                raise DataError(f"{image_id}: annotated cancer stack without a malignant lesion in the lesions table")
            is_pos = np.isin(z, sorted(near))
            role[is_pos] = "annotated_pos"
            role[~is_pos] = "weak_pos" if weak_labels else "unannotated"
        elif weak_label and label in {"benign", "normal"} and weak_negatives == "kd":
            role[:] = "unannotated"
        elif annotation == "full" or (weak_label and label in {"benign", "normal"}):
            role[z % neg_stride == 0] = "annotated_neg"
        elif weak_label and label == "cancer":
            role[:] = "weak_pos"
        elif not weak_labels:
            role[:] = "unannotated"  # no slice label: every slice is a pool slice for KD / selection
        keep = role != ""
        labels = np.where(role == "annotated_pos", 1.0, np.where(role == "annotated_neg", 0.0, np.nan))
        labels = np.where(role == "weak_pos", 1.0, labels)  # y_breast of a cancer-positive breast
        parts.append(
            pd.DataFrame(
                {
                    "image_id": image_id,
                    "exam_id": str(row["exam_id"]),
                    "laterality": str(row["laterality"]),
                    "vendor": str(row.get("vendor", "")),
                    "slice": z[keep],
                    "role": role[keep].astype(str),
                    "label": labels[keep],
                }
            )
        )
    columns = ["image_id", "exam_id", "laterality", "vendor", "slice", "role", "label"]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def select_by_threshold(table: pd.DataFrame, scores: pd.DataFrame, threshold: float) -> pd.Series:
    """Pool slices (``weak_pos`` / ``unannotated``) whose teacher score on the non-augmented slice is > T.

    scores: columns image_id, slice, score. Returns a boolean Series aligned with ``table``; rows that
    are not pool slices are False. A pool slice without a score is an error.
    """
    merged = table[["image_id", "slice"]].merge(scores, on=["image_id", "slice"], how="left", validate="one_to_one")
    pool = table["role"].isin(POOL_ROLES).to_numpy()
    missing = pool & merged["score"].isna().to_numpy()
    if missing.any():
        first = table.loc[missing, ["image_id", "slice"]].head(3).to_dict("records")
        raise DataError(f"{int(missing.sum())} pool slices have no teacher score, e.g. {first}")
    return pd.Series(pool & (merged["score"].to_numpy() > threshold), index=table.index)


def training_table(
    table: pd.DataFrame,
    *,
    kd: bool,
    use_pool: bool,
    selected: pd.Series | None = None,
    supervise_weak: bool = False,
) -> pd.DataFrame:
    """The slices a strategy trains on, with loss flags ``sup_cls``, ``sup_seg``, ``kd`` and a ``group``.

    Annotated slices: supervised (cls + seg), plus KD when ``kd``. Pool slices (when ``use_pool``, and
    only the ``selected`` ones when given): KD on both heads; with ``supervise_weak`` a selected
    ``weak_pos`` slice also gets the supervised classification loss with y_breast (no mask exists).
    """
    annotated = table["role"].isin(["annotated_pos", "annotated_neg"])
    pool = table["role"].isin(POOL_ROLES) & use_pool
    if selected is not None:
        pool &= selected.reindex(table.index, fill_value=False).astype(bool)
    out = table[annotated | pool].copy()
    is_ann = out["role"].isin(["annotated_pos", "annotated_neg"]).to_numpy()
    weak_sup = (out["role"] == "weak_pos").to_numpy() & supervise_weak
    out["sup_cls"] = (is_ann | weak_sup).astype(np.float32)
    out["sup_seg"] = is_ann.astype(np.float32)
    out["kd"] = np.where(is_ann, float(kd), 1.0).astype(np.float32)
    out["group"] = np.where(is_ann, "annotated", np.where(weak_sup, "weak", "kd_only"))
    return out.reset_index(drop=True)


class CompositionConfig(Section):
    """How a batch is split between annotated, weak (breast label supervised) and KD-only slices.

    ``fixed`` (default): each batch holds these fractions of each group (renormalised over the groups
    that exist), whatever a group's size; an epoch is one pass over the annotated slices.
    ``capped``: the fixed fractions, but a pool group (weak, KD-only) never gets a larger share than its
    size relative to the annotated group warrants (``annotated × size_g / size_annotated``), so a pool of
    189 selected slices is not seen 90 times while each annotated slice is seen a few times.
    ``proportional``: each group's share is its size (annotated positives still get
    ``positive_fraction`` of the annotated slots). ``uniform``: the paper's literal reading, slices drawn
    uniformly from the union, so the pool's size sets the mix and no positive oversampling applies.
    Which one a setting uses is a choice made on the validation split (``experiment dbt-selectivekd``'s
    ``tune`` stage).
    """

    mode: str = Field("fixed", pattern="^(fixed|capped|proportional|uniform)$")
    annotated: float = Field(0.5, ge=0)
    weak: float = Field(0.25, ge=0)
    kd_only: float = Field(0.25, ge=0)
    positive_fraction: float | None = Field(
        None,
        ge=0,
        lt=1,
        description="share of the annotated slots given to annotated positive slices; None = drawn as they "
        "come (the paper: strided negatives only). Small data sets with few cancers need this.",
    )


def group_weights(sizes: dict[str, int], cfg: CompositionConfig) -> dict[str, float]:
    """Unnormalised batch share of each non-empty group under ``cfg.mode`` (see :class:`CompositionConfig`)."""
    present = [g for g in GROUPS if sizes.get(g, 0) > 0]
    if cfg.mode == "proportional":
        return {g: float(sizes[g]) for g in present}
    weights = {g: float(getattr(cfg, g)) for g in present}
    if cfg.mode == "capped" and sizes.get("annotated", 0) > 0:
        per_slice = weights["annotated"] / sizes["annotated"]  # the annotated group's share per slice
        for g in present:
            if g != "annotated":
                weights[g] = min(weights[g], per_slice * sizes[g])
    return weights


def group_counts(sizes: dict[str, int], batch_size: int, cfg: CompositionConfig) -> dict[str, int]:
    """Slices per batch from each non-empty group: shares renormalised, rounded, summing to batch_size.

    A group whose share rounds to zero slots still gets one when its weight is positive, so a small
    selected pool is sampled rather than silently dropped.
    """
    weights = {g: w for g, w in group_weights(sizes, cfg).items() if w > 0}
    if not weights:
        raise DataError(f"no slice to train on: group sizes {sizes}, composition {cfg.model_dump()}")
    total = sum(weights.values())
    counts = {g: max(int(np.floor(batch_size * w / total)), 1) for g, w in weights.items()}
    while sum(counts.values()) > batch_size:  # the minimum of one slot came out of the largest share
        counts[max(counts, key=counts.get)] -= 1
    for g in sorted(weights, key=lambda g: -weights[g])[: batch_size - sum(counts.values())]:
        counts[g] += 1  # the remainder goes to the largest shares
    return {g: c for g, c in counts.items() if c > 0}


class ComposedBatchSampler:
    """Deterministic composed batches over a training table's ``group`` column, split over ranks.

    Yields, for this rank, lists of ``(epoch, index)`` keys (the slice dataset seeds augmentation from
    them). Each group is walked in permutations seeded by (seed, epoch, group, pass), so the order is a
    pure function of (seed, epoch): the engine's exact resume holds. Rank r takes every world_size-th
    slot of the global batch, so every rank sees about the same composition.
    """

    def __init__(
        self,
        groups: pd.Series,
        batch_size: int,
        cfg: CompositionConfig | None = None,
        *,
        positive: np.ndarray | pd.Series | None = None,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"global batch size {batch_size} does not split evenly over {world_size} ranks")
        cfg = cfg or CompositionConfig()
        labels = groups.astype(str).to_numpy()
        if cfg.mode == "uniform":
            labels = np.full(len(labels), "annotated", dtype=object)
        self.members = {g: np.flatnonzero(labels == g) for g in GROUPS if (labels == g).any()}
        sizes = {g: len(m) for g, m in self.members.items()}
        uniform_cfg = CompositionConfig(annotated=1.0, weak=0.0, kd_only=0.0)
        self.counts = group_counts(sizes, batch_size, uniform_cfg if cfg.mode == "uniform" else cfg)
        oversample = cfg.positive_fraction is not None and cfg.mode != "uniform"
        if oversample and positive is not None and "annotated" in self.counts:
            self._split_positives(np.asarray(positive, dtype=bool), cfg.positive_fraction)
            sizes = {g: len(m) for g, m in self.members.items()}
        lead = "annotated" if "annotated" in self.counts else max(self.counts, key=lambda g: sizes[g])
        self.batches = max(sizes[lead] // self.counts[lead], 1)
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0

    def _split_positives(self, positive: np.ndarray, fraction: float) -> None:
        """Give ``fraction`` of the annotated slots to annotated positives (an ``annotated_pos`` sub-group)."""
        members = self.members["annotated"]
        pos, neg = members[positive[members]], members[~positive[members]]
        n = self.counts["annotated"]
        k = min(max(int(round(n * fraction)), 1 if fraction > 0 else 0), n - 1)
        if len(pos) == 0 or len(neg) == 0 or k == 0:
            return  # nothing to balance
        self.members["annotated"], self.members["annotated_pos"] = neg, pos
        self.counts = {
            "annotated": n - k,
            "annotated_pos": k,
            **{g: c for g, c in self.counts.items() if g != "annotated"},
        }

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.batches

    def _stream(self, gi: int, group: str, need: int) -> np.ndarray:
        """``need`` members of ``group`` for this epoch: concatenated seeded permutations."""
        members = self.members[group]
        out, k = [], 0
        while sum(len(o) for o in out) < need:
            g = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 7 + gi) * 1009 + k)
            out.append(members[torch.randperm(len(members), generator=g).numpy()])
            k += 1
        return np.concatenate(out)[:need]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = (*GROUPS, "annotated_pos")
        streams = {g: self._stream(order.index(g), g, n * self.batches) for g, n in self.counts.items()}
        for b in range(self.batches):
            batch = np.concatenate([streams[g][b * n : (b + 1) * n] for g, n in self.counts.items()])
            yield [(self.epoch, int(i)) for i in batch[self.rank :: self.world_size]]
