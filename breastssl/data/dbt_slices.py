"""DBT stacks as slices: reading and resizing stacks, lesion masks, the slice dataset, batched scoring.

A stack is read once (``.npy`` or DICOM), windowed with the manifest's ``window_center`` /
``window_width`` to [0, 1], resized to the training size and kept in a bounded cache, because
every training slice of a stack is drawn from the same file. Readers never augment (DESIGN §4):
augmentation happens in :class:`SliceDataset`, seeded per (epoch, sample) so a resumed run draws
the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..errors import DataError
from . import dicom_lut
from .dicom import read_image
from .schema import resolve_path
from .transforms import AugmentConfig, augment

SampleKey = int | tuple[int, int]  # a slice index, or (epoch, index) from a composing batch sampler


def resize_stack(arr: np.ndarray, size: tuple[int, int] | None, mode: str = "bilinear") -> np.ndarray:
    """(D, H, W) float32 → (D, *size); antialiased when shrinking so small slices keep small lesions."""
    if size is None or tuple(arr.shape[-2:]) == tuple(size):
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))[:, None]
    if mode == "nearest":
        out = F.interpolate(t, size=size, mode="nearest")
    else:
        out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[:, 0].numpy()


def _manifest_window(row: Mapping[str, Any]) -> tuple[float, float] | None:
    """The row's ``window_center`` / ``window_width`` when both are usable, else None."""
    center, width = row.get("window_center"), row.get("window_width")
    try:
        c, w = float(center), float(width)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return (c, w) if np.isfinite(c) and np.isfinite(w) and w > 0 else None


def _read_display(path: Path, row: Mapping[str, Any]) -> np.ndarray:
    """Pixels of a stack file (DICOM, legacy series folder or ``.npy``) as float32 in [0, 1], bright = dense.

    Everything goes through :func:`breastssl.data.dicom.read_image`, the reader every other part of
    breastssl uses, so training, scoring and ``predict`` see the same values. The manifest's window
    wins over the file's own: a DICOM is then read in modality units (``voi=False``) and windowed
    here; without one the file's VOI (per-frame windows, VOI LUT, SIGMOID, MONOCHROME1) applies.
    ``.npy`` files carry no window, so ``read_npy`` applies the manifest's (or min–max) itself.
    """
    if not path.exists():
        raise DataError(f"{path}: stack file does not exist")
    window = _manifest_window(row)
    fn = row.get("voi_function")
    fn = fn if isinstance(fn, str) and fn else "LINEAR"  # an empty manifest cell reads as NaN
    rec = {k: v for k, v in row.items() if k not in ("window_center", "window_width", "voi_function")}
    if window is not None:
        rec.update(window_center=window[0], window_width=window[1], voi_function=fn)
    is_npy = path.suffix.lower() == ".npy"
    try:
        image = read_image(path, rec, voi=is_npy or window is None)  # .npy: read_npy applies the window
        photometric = str(image.meta.get("photometric") or "MONOCHROME2")
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise DataError(f"{path}: a {photometric} colour image, not a grey-scale DBT stack")
        if window is None or is_npy:
            return image.pixels
        out = dicom_lut.window(image.pixels, window[0], window[1], fn)
    except ValueError as exc:  # DICOM read failures are DataErrors already; this is the window
        raise DataError(f"{path}: manifest window {window} ({fn}) cannot be applied ({exc})") from None
    # read with voi=False, the reader has not inverted: bright must mean dense whatever the photometric
    return 1.0 - out if photometric == "MONOCHROME1" else out


def load_stack(row: Mapping[str, Any], root: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """The stack of a manifest row as float32 (D, H, W) in [0, 1], resized to ``size`` = (H, W).

    The manifest's ``window_center`` / ``window_width`` (DICOM LINEAR window, or ``voi_function``) win
    over the file's own window; without either the stack is scaled by its range.
    """
    path = resolve_path(Path(root), str(row["path"]))
    pixels = _read_display(path, row)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.ndim != 3 or pixels.shape[0] == 0:
        raise DataError(f"{path}: expected a (slices, rows, columns) stack, got shape {pixels.shape}")
    try:
        n_slices = int(row.get("n_slices") or 0)
    except (TypeError, ValueError):
        n_slices = 0
    if pixels.shape[0] < n_slices:  # slices past the end would be indexed by training (an IndexError otherwise)
        raise DataError(f"{path}: the stack has {pixels.shape[0]} slices, the manifest says n_slices={n_slices}")
    return resize_stack(np.ascontiguousarray(pixels, dtype=np.float32), size)


def load_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """A binary mask file (PNG, TIFF, DICOM, ...: ``data.masks.read_mask``) as float32 (H, W) in {0, 1}, resized to
    ``size``."""
    from .masks import read_mask

    mask = read_mask(path).astype(np.float32)
    return (resize_stack(mask[None], size)[0] > 0.5).astype(np.float32)


class StackStore:
    """Loaded, resized stacks and slice masks, with an LRU bound in megabytes.

    ``positives`` maps image_id → lesion rows (``slice``, ``mask_path``) whose masks mark the
    annotated positive slices (key slice ± ``halfwidth``).
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        root: str | Path,
        size: tuple[int, int] | None,
        lesions: pd.DataFrame | None = None,
        halfwidth: int = 1,
        cache_mb: float = 1024.0,
        cache: Any = None,
    ) -> None:
        self.cache = cache  # a CacheReader of mode "dbt" at ``size``, or None: decode the source files
        self.rows = {str(r["image_id"]): r for r in manifest.to_dict("records")}
        self.root = Path(root)
        self.size = tuple(size) if size is not None else None
        self.halfwidth = halfwidth
        self.cache_bytes = cache_mb * 2**20
        self._stacks: OrderedDict[str, np.ndarray] = OrderedDict()
        self._masks: dict[tuple[str, int], np.ndarray] = {}
        self.lesions: dict[str, list[dict[str, Any]]] = {}
        if lesions is not None and len(lesions):
            malignant = lesions[lesions["lesion_class"].astype(str) == "malignant"]
            for r in malignant.to_dict("records"):
                self.lesions.setdefault(str(r["image_id"]), []).append(r)

    def slice(self, image_id: str, z: int, compact: bool = False) -> np.ndarray:
        """(H, W) float32 in [0, 1]: slice ``z`` of a stack; from the cache, only that slice is read.

        ``compact``: from a float16 cache, the stored float16 values themselves (the same numbers, half the bytes
        to move; the device path converts them on the GPU); float32 otherwise.
        """
        if self.cache is not None and image_id not in self._stacks:
            if compact and self.cache.get(image_id).dtype == np.float16:
                return np.array(self.cache.get(image_id)[z])  # a copy: the memory map is read-only
            return self.cache.slice_f32(image_id, z)
        return self.stack(image_id)[z]

    def stack(self, image_id: str) -> np.ndarray:
        """(D, H, W) float32 in [0, 1]."""
        if image_id in self._stacks:
            self._stacks.move_to_end(image_id)
            return self._stacks[image_id]
        if self.cache is not None:
            arr = self.cache.stack_f32(image_id)
        else:
            arr = load_stack(self.rows[image_id], self.root, self.size)
        self._stacks[image_id] = arr
        while sum(a.nbytes for a in self._stacks.values()) > self.cache_bytes and len(self._stacks) > 1:
            self._stacks.popitem(last=False)
        return arr

    def mask(self, image_id: str, z: int) -> np.ndarray:
        """(H, W) union of the malignant lesion masks whose key slice is within ±halfwidth of ``z``."""
        key = (image_id, z)
        if key not in self._masks:
            shape = self.size or self.stack(image_id).shape[-2:]
            out = np.zeros(shape, np.float32)
            for les in self.lesions.get(image_id, []):
                if abs(int(les["slice"]) - z) <= self.halfwidth and isinstance(les.get("mask_path"), str):
                    out = np.maximum(out, load_mask(resolve_path(self.root, les["mask_path"]), self.size))
            self._masks[key] = out
        return self._masks[key]


class SliceDataset(Dataset):
    """Training slices: one row of ``table`` per slice.

    table columns: ``image_id``, ``slice``, ``label`` (NaN = none), and 0/1 flags ``sup_cls``, ``sup_seg``,
    ``kd``. ``__getitem__`` takes an index or (epoch, index) and returns ``image`` (1, H, W), ``mask``
    (1, H, W), ``label``, ``sup_cls``, ``sup_seg``, ``kd`` (scalars) and ``index``.

    ``compact`` (for ``train.augment_on=device``, without ``augment_cfg``): ``image`` float16 when the store reads a
    float16 cache (the values it stores) and ``mask`` uint8 (masks are binary): the same numbers in 1.5 MB instead
    of 4.6 MB per 896 × 640 slice through collate, worker shared memory, the one pin-memory thread and the PCIe
    copy (``benchmarks/bench_loader_scale.py``); the device transform makes them float32 on the GPU.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        store: StackStore,
        augment_cfg: AugmentConfig | None = None,
        seed: int = 0,
        compact: bool = False,
    ) -> None:
        if compact and augment_cfg is not None and augment_cfg.enabled:
            raise ValueError("compact items are for augmentation on the device: the loader path yields float32")
        self.compact = compact
        self.table = table.reset_index(drop=True)
        self.store = store
        self.augment_cfg = augment_cfg
        self.seed = seed
        cols = ["sup_cls", "sup_seg", "kd"]
        self._flags = self.table[cols].to_numpy(np.float32)
        self._labels = np.nan_to_num(self.table["label"].to_numpy(np.float32), nan=0.0)
        self._ids = self.table["image_id"].astype(str).tolist()
        self._slices = self.table["slice"].astype(int).tolist()

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, key: SampleKey) -> dict[str, Tensor]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        image_id, z = self._ids[i], self._slices[i]
        image = self.store.slice(image_id, z, self.compact)
        if self._flags[i, 1] > 0:
            mask = self.store.mask(image_id, z)
        else:
            mask = np.zeros(image.shape, np.uint8 if self.compact else np.float32)
        if self.augment_cfg is not None and self.augment_cfg.enabled:
            # seeded by (seed, epoch, sample): identical after a resume, different every epoch
            rng = np.random.default_rng([self.seed, epoch, i])
            image, mask = augment(image, mask, rng, self.augment_cfg)
        sup_cls, sup_seg, kd = self._flags[i]
        kind = (image.dtype, np.uint8) if self.compact else (np.float32, np.float32)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, kind[0]))[None],
            "mask": torch.from_numpy(np.ascontiguousarray(mask, kind[1]))[None],
            "label": torch.tensor(self._labels[i]),
            "sup_cls": torch.tensor(sup_cls),
            "sup_seg": torch.tensor(sup_seg),
            "kd": torch.tensor(kd),
            "index": torch.tensor(i),
        }


@torch.inference_mode()
def stack_scores(
    model: Any, stack: np.ndarray, batch_size: int, device: torch.device | str, logit_shift: float = 0.0
) -> Tensor:
    """(D, H, W) slices → (D,) scores σ(logit + logit_shift) on the CPU, ``batch_size`` slices per forward.

    ``logit_shift`` is a run's prior correction (``data/prior.py``; 0 = the scores as trained).

    The one scoring kernel of training (``score_slices``) and ``breastssl predict``, so both give the same
    bits. A model with ``classify`` is scored without its segmentation decoder (~6× at 80×64); outputs may
    also be numpy arrays (an ONNX runtime model).
    """
    tensor = torch.from_numpy(stack)
    classify = getattr(model, "classify", None)
    out = torch.empty(stack.shape[0])
    for start in range(0, stack.shape[0], batch_size):
        x = tensor[start : start + batch_size, None].to(device)
        logits = classify(x) if callable(classify) else model(x)["logits"]
        logits = logits if isinstance(logits, Tensor) else torch.as_tensor(np.asarray(logits))
        if logits.numel() != x.shape[0]:
            raise DataError(f"the model gives {tuple(logits.shape)} logits for {x.shape[0]} slices; DBT needs one each")
        out[start : start + x.shape[0]] = torch.sigmoid(logits.float() + logit_shift).reshape(-1).cpu()
    return out


@torch.inference_mode()
def score_slices(
    model: nn.Module,
    store: StackStore,
    image_ids: Sequence[str],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    ctx: Any = None,
    logit_shift: float = 0.0,
) -> pd.DataFrame:
    """Sigmoid scores of every slice of ``image_ids`` on NON-augmented slices: columns image_id, slice, score.

    ``logit_shift`` is added to every logit first (the prior correction of ``data/prior.py``).

    Sharded over ranks by stack (``shard_range``) and gathered in rank order (``gather_variable``), so
    every rank returns the whole table. Memory stays flat as the pool grows: one stack at a time
    is held beyond the store's bounded cache, and only one float per slice is kept.
    """
    from ..parallel import DistContext, gather_variable, shard_range

    ctx = ctx or DistContext(device=torch.device(device))
    was_training = model.training
    model.eval()
    ids = [str(i) for i in image_ids]
    depths = np.array([int(store.rows[i]["n_slices"]) for i in ids], dtype=np.int64)
    mine = shard_range(len(ids), ctx)
    # one float per slice written in place: thousands of small kept tensors fragmented the heap (+23–64 MB at 1e5)
    local = torch.empty(int(depths[mine.start : mine.stop].sum()))
    pos = 0
    for k in mine:
        stack = store.stack(ids[k])
        if stack.shape[0] != depths[k]:
            raise DataError(f"{ids[k]}: the stack has {stack.shape[0]} slices, the manifest says n_slices={depths[k]}")
        local[pos : pos + stack.shape[0]] = stack_scores(model, stack, batch_size, ctx.device, logit_shift)
        pos += stack.shape[0]
    scores = gather_variable(local.to(ctx.device), ctx).cpu().numpy()
    model.train(was_training)
    starts = np.repeat(np.cumsum(depths) - depths, depths)
    return pd.DataFrame(
        {
            "image_id": pd.Series(ids, dtype=str).repeat(depths).reset_index(drop=True),
            "slice": np.arange(int(depths.sum())) - starts,
            "score": scores,
        }
    )
