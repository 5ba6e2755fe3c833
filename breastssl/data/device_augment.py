"""Batched augmentation on the training device (issue 18): the per-sample path of ``transforms.augment``, as tensor ops.

:class:`DeviceAugment` draws, for every sample of a batch, the same decisions and parameters from the same
distributions as :func:`breastssl.data.transforms.augment` (eight uniforms in [0, 1) that gate the ops, four in
[-1, 1) for angle, shift, contrast factor and sharpen amount) and applies the ops in the same order: flips,
rotation, brightness/contrast, CLAHE, sharpen, noise, clip to [0, 1], solarize. Geometric ops move image and mask
together (the mask by nearest neighbour, as the reference's ``order=0``); photometric ops touch the image only.

Parameters come from a ``torch.Generator`` on the CPU, so a seed gives the same decisions on any device. The
Gaussian noise itself is drawn on the images' device from a per-sample seed (drawing 16 × 896 × 640 normals on the
CPU and copying them would cost more than the rest of the augmentation): its values repeat exactly on the same
device type, and have the same distribution everywhere.

Which op comes from where:

- flips, rotation (``grid_sample`` with the rotation of ``scipy.ndimage.rotate``: same centre, sense and zero
  fill), brightness/contrast, noise, solarize: written here; the same arithmetic as the reference.
- sharpen: written here, not ``kornia.filters``: the reference blurs with ``scipy.ndimage.gaussian_filter``, whose
  border mode ``reflect`` repeats the edge pixel (kornia's/torch's ``reflect`` does not) and whose kernel is
  truncated at 4σ; both are reproduced exactly.
- CLAHE: ``kornia.enhance.equalize_clahe`` on the same 4 × 4 tile grid with the same bin cap (skimage's
  normalised ``clip_limit`` × tile pixels = kornia's ``clip`` × tile pixels / 256), the input and output stretched
  to [0, 1] per image as skimage's ``equalize_adapthist`` does. Not bit-identical: kornia counts 256 levels of the
  image (skimage 256 bins of 16,384 levels) and interpolates between tile centres half a pixel apart from skimage.
"""

from __future__ import annotations

from typing import Any

import kornia
import torch
import torch.nn.functional as F
from torch import Tensor

from .transforms import AugmentConfig

CLAHE_CLIP = 0.01  # transforms.clahe's default clip_limit (normalised, skimage convention)
CLAHE_BINS = 256  # kornia's histogram bins; also skimage's default nbins
SHARPEN_SIGMA = 1.0  # transforms.sharpen's blur
GAUSS_TRUNCATE = 4.0  # scipy.ndimage.gaussian_filter's default truncate

# the keys of ``draw``'s dict; flags are bool, values float64 (so thresholds compare as numpy's float64 draws do)
PARAM_KEYS = ("hflip", "vflip", "rotate", "angle", "bc", "shift", "factor", "clahe", "sharpen", "amount", "noise",
              "solarize", "noise_seed")  # fmt: skip


class DeviceAugment:
    """Per-sample random augmentation of a whole batch, on the batch's device.

    ``aug(images, masks, generator)`` = ``aug.apply(images, masks, aug.draw(len(images), generator))``.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(
        self, images: Tensor, masks: Tensor | None, generator: torch.Generator
    ) -> tuple[Tensor, Tensor | None]:
        """Augment (B, 1, H, W) images in [0, 1] and their (B, 1, H, W) masks (or None); returns both, same shapes."""
        if not self.cfg.enabled:
            return images, masks
        return self.apply(images, masks, self.draw(images.shape[0], generator))

    def draw(self, batch_size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Decisions and parameters of ``batch_size`` samples: a dict of (B,) CPU tensors (keys: ``PARAM_KEYS``).

        Per sample: 8 uniforms in [0, 1) and 4 in [-1, 1), as ``transforms.augment`` draws them, then a seed for
        its noise. ``generator`` must be a CPU generator.
        """
        u = torch.rand(batch_size, 8, generator=generator, dtype=torch.float64)
        v = torch.rand(batch_size, 4, generator=generator, dtype=torch.float64) * 2.0 - 1.0
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator, dtype=torch.int64)
        return self.params_from_uniforms(u, v, seeds)

    def params_from_uniforms(self, u: Tensor, v: Tensor, noise_seed: Tensor | None = None) -> dict[str, Tensor]:
        """Parameters from (B, 8) uniforms in [0, 1) and (B, 4) in [-1, 1), mapped exactly as ``transforms.augment``.

        Tests pass the numbers a numpy generator drew for the reference to get the reference's decisions.
        """
        cfg = self.cfg
        u, v = u.double(), v.double()
        rotate = (u[:, 2] < cfg.rotate) & (cfg.max_degrees > 0)
        return {
            "hflip": u[:, 0] < cfg.hflip,
            "vflip": u[:, 1] < cfg.vflip,
            "rotate": rotate,
            "angle": torch.where(rotate, v[:, 0] * cfg.max_degrees, 0.0),  # degrees, counter-clockwise as shown
            "bc": u[:, 3] < cfg.brightness_contrast,
            "shift": v[:, 1] * cfg.brightness,
            "factor": 1.0 + v[:, 2] * cfg.contrast,
            "clahe": u[:, 4] < cfg.clahe,
            "sharpen": u[:, 5] < cfg.sharpen,
            "amount": 0.5 + 0.5 * v[:, 3].abs(),
            "noise": (u[:, 6] < cfg.noise) & (cfg.noise_std > 0),
            "solarize": u[:, 7] < cfg.solarize,
            "noise_seed": noise_seed if noise_seed is not None else torch.zeros(len(u), dtype=torch.int64),
        }

    def apply(
        self, images: Tensor, masks: Tensor | None, params: dict[str, Tensor], noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Apply ``params`` (from :meth:`draw`) to (B, 1, H, W) images and masks; the ops in the reference's order.

        ``noise``: optional (B, 1, H, W) standard normals to use instead of drawing them (tests inject the
        reference's). Returns float images clipped to [0, 1] and masks (nearest-neighbour resampled), same shapes.
        """
        dev = images.device
        p = {k: t.to(dev) for k, t in params.items()}
        # one copy of the batch, updated in place below (index_copy_ of the samples each op touches)
        x = images.to(torch.float32, copy=True)
        m = masks.to(torch.float32, copy=True) if masks is not None else None

        # geometry: image and mask together
        x, m = _where_flip(p["hflip"], x, m, -1)
        x, m = _where_flip(p["vflip"], x, m, -2)
        if bool(p["rotate"].any()):
            idx = p["rotate"].nonzero().squeeze(1)  # rotate only the samples that drew it: the costliest op
            xr, mr = rotate(x[idx], m[idx] if m is not None else None, p["angle"][idx])
            x.index_copy_(0, idx, xr)
            if m is not None:
                m.index_copy_(0, idx, mr)

        # photometry: image only. Every op touches only the samples that drew it (index, compute, index_copy):
        # on a CPU a masked torch.where over the whole batch costs more than the op itself
        x = _on_subset(p["bc"], x, lambda v, i: _brightness_contrast(v, p["factor"][i], p["shift"][i]))
        x = _on_subset(p["clahe"], x, lambda v, i: clahe(v))
        x = _on_subset(p["sharpen"], x, lambda v, i: sharpen(v, p["amount"][i]))
        if bool(p["noise"].any()):
            z = noise.to(dev, x.dtype) if noise is not None else _normals(p["noise_seed"], p["noise"], x)
            x = _on_subset(p["noise"], x, lambda v, i: v + self.cfg.noise_std * z[i])
        x = x.clamp_(0.0, 1.0)
        t = self.cfg.solarize_threshold
        x = _on_subset(p["solarize"], x, lambda v, i: torch.where(v > t, 1.0 - v, v))
        return x, m


def rotate(images: Tensor, masks: Tensor | None, degrees: Tensor) -> tuple[Tensor, Tensor | None]:
    """Rotate (N, 1, H, W) images (bilinear) and masks (nearest) by ``degrees`` (N,) about the centre, zero fill.

    The sampling grid is ``scipy.ndimage.rotate``'s (axes (1, 0), ``reshape=False``): output pixel (y, x) reads the
    input at R·((y, x) − c) + c with R = [[cos, sin], [−sin, cos]] and c = ((H − 1) / 2, (W − 1) / 2); its row and
    column parts in float64, their sum in the images' dtype (positions agree with scipy's to float32 rounding).
    With ``align_corners=True`` pixel centres 0 and W − 1
    sit at −1 and 1; points outside the image get 0, as with scipy's ``mode="constant"``.
    """
    n, _, h, w = images.shape
    dev = images.device
    rad = torch.deg2rad(degrees.to(dev, torch.float64))
    cos, sin = torch.cos(rad)[:, None, None], torch.sin(rad)[:, None, None]  # (N, 1, 1)
    ys = torch.arange(h, device=dev, dtype=torch.float64)[:, None] - (h - 1) / 2  # (H, 1)
    xs = torch.arange(w, device=dev, dtype=torch.float64)[None, :] - (w - 1) / 2  # (1, W)
    # grid_sample's normalised input position of each output pixel, (gx, gy) = (ix, iy) · 2 / (size − 1) − 1, is a
    # row term plus a column term per sample: both are computed in float64 on (N, H, 1) / (N, 1, W), and only their
    # sum is formed at full size, in float32 straight into the grid (full-size float64 temporaries cost ~8× the
    # sampling itself on a CPU; the sum's rounding, ~1e-4 px at 900 px, is below the bilinear tolerance)
    sx, sy = (2.0 / (w - 1) if w > 1 else 0.0), (2.0 / (h - 1) if h > 1 else 0.0)  # a 1-px axis: its only centre
    grid = torch.empty(n, h, w, 2, device=dev, dtype=images.dtype)
    torch.add((-sin * ys * sx).to(images.dtype), (cos * xs * sx).to(images.dtype), out=grid[..., 0])
    torch.add((cos * ys * sy).to(images.dtype), (sin * xs * sy).to(images.dtype), out=grid[..., 1])
    # scipy's mode="constant" gives cval to every point outside [0, size - 1], where grid_sample's zero padding
    # would still blend the edge pixel with zero: outside points are zeroed explicitly
    # (moved far outside instead of masking the outputs: zero padding then gives exactly 0, images and masks alike)
    outside = (grid[..., 0].abs() > 1.0) | (grid[..., 1].abs() > 1.0)  # (N, H, W)
    grid.masked_fill_(outside.unsqueeze(-1), -4.0)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    out_m = None
    if masks is not None:
        out_m = torch.zeros_like(masks)
        some = masks.flatten(1).any(dim=1).nonzero().squeeze(1)  # most slices have an empty mask: nothing to move
        if len(some):
            moved = F.grid_sample(masks[some], grid[some].to(masks.dtype), mode="nearest", padding_mode="zeros",
                                  align_corners=True)  # fmt: skip
            out_m.index_copy_(0, some, moved)
    return out, out_m


def gaussian_kernel(sigma: float = SHARPEN_SIGMA, truncate: float = GAUSS_TRUNCATE) -> Tensor:
    """scipy's 1-D Gaussian weights: radius ``int(truncate·σ + 0.5)``, normalised to sum 1; shape (2r + 1,)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def symmetric_pad(x: Tensor, r: int, dim: int) -> Tensor:
    """Pad ``r`` pixels on both ends of ``dim`` by mirroring with the edge pixel repeated (scipy ``reflect``).

    torch's ``reflect`` leaves the edge pixel out (scipy's ``mirror``), hence this; needs r ≤ size along ``dim``.
    """
    size = x.shape[dim]
    head = x.narrow(dim, 0, r).flip(dim)
    tail = x.narrow(dim, size - r, r).flip(dim)
    return torch.cat([head, x, tail], dim=dim)


def gaussian_blur(x: Tensor, sigma: float = SHARPEN_SIGMA) -> Tensor:
    """``scipy.ndimage.gaussian_filter(x, sigma)`` of each (N, 1, H, W) image: separable, scipy's borders."""
    k = gaussian_kernel(sigma).to(x.device, x.dtype)
    r = (len(k) - 1) // 2
    if min(x.shape[-2:]) < r:  # scipy would mirror repeatedly; slices are far larger than the 4-pixel radius
        raise ValueError(f"sharpen needs images of at least {r} pixels per side, got {tuple(x.shape[-2:])}")
    return _correlate1d(_correlate1d(x, k, -1), k, -2)


def _correlate1d(x: Tensor, k: Tensor, dim: int) -> Tensor:
    """Correlate ``x`` with the symmetric kernel ``k`` (2r + 1,) along ``dim``, scipy ``reflect`` borders.

    A sum of 2r + 1 shifted slices: for one-channel images this is several times faster on CPUs than
    ``conv2d`` (whose kernels are built for many channels) and the same on GPUs.
    """
    r = (len(k) - 1) // 2
    size = x.shape[dim]
    padded = symmetric_pad(x, r, dim)
    out = padded.narrow(dim, r, size) * k[r]
    for i in range(r):  # the kernel is symmetric: pair the taps at ±(r − i)
        out = out + (padded.narrow(dim, i, size) + padded.narrow(dim, 2 * r - i, size)) * k[i]
    return out


def sharpen(x: Tensor, amount: Tensor) -> Tensor:
    """Unsharp mask of (N, 1, H, W) images: x + amount·(x − blur(x)), ``amount`` (N,)."""
    return x + _col(amount, x) * (x - gaussian_blur(x))


def clahe(x: Tensor) -> Tensor:
    """CLAHE of (N, 1, H, W) images as ``transforms.clahe`` (4 × 4 tiles, clip 0.01), via kornia; returns [0, 1].

    skimage clips the input to [0, 1], stretches it to its own min–max, equalises and stretches the result to
    [0, 1]; the same here around kornia's equaliser.
    """
    x = _stretch(x.clamp(0.0, 1.0))
    tiles = (min(4, x.shape[-2] // 2), min(4, x.shape[-1] // 2))  # transforms.clahe: kernel = max(side // 4, 2)
    y = kornia.enhance.equalize_clahe(x, clip_limit=CLAHE_CLIP * CLAHE_BINS, grid_size=tiles)
    return _stretch(y)


def _stretch(x: Tensor) -> Tensor:
    """Each (N, 1, H, W) image linearly mapped to [0, 1] (a constant image to 0), as skimage's rescale_intensity."""
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def _col(t: Tensor, like: Tensor) -> Tensor:
    """A (B,) tensor as (B, 1, 1, 1), in ``like``'s dtype unless it is a bool flag."""
    t = t.to(like.device)
    return t.view(-1, 1, 1, 1) if t.dtype == torch.bool else t.to(like.dtype).view(-1, 1, 1, 1)


def _where_flip(flag: Tensor, x: Tensor, m: Tensor | None, dim: int) -> tuple[Tensor, Tensor | None]:
    """Flip the samples whose ``flag`` (B,) is set along ``dim``, image and mask alike."""
    x = _on_subset(flag, x, lambda v, i: v.flip(dim))
    return x, (_on_subset(flag, m, lambda v, i: v.flip(dim)) if m is not None else None)


def _on_subset(flag: Tensor, x: Tensor, fn: Any) -> Tensor:
    """``fn(x[idx], idx)`` written into ``x`` (in place) for the samples ``idx`` whose ``flag`` (B,) is set."""
    if not bool(flag.any()):
        return x
    idx = flag.to(x.device).nonzero().squeeze(1)
    if len(idx) == len(x):
        return fn(x, idx).to(x.dtype)
    return x.index_copy_(0, idx, fn(x[idx], idx).to(x.dtype))


def _brightness_contrast(x: Tensor, factor: Tensor, shift: Tensor) -> Tensor:
    """(x − mean)·factor + mean + shift per (N, 1, H, W) image, the mean over the image after the geometry."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _col(factor, x) + mean + _col(shift, x)


def _normals(seeds: Tensor, flags: Tensor, like: Tensor) -> Tensor:
    """(B, 1, H, W) standard normals on ``like``'s device; sample b's from a generator seeded with ``seeds[b]``.

    Only flagged samples draw (the rest stay zero): a sample's noise does not depend on the rest of the batch.
    """
    out = torch.zeros_like(like)
    gen = torch.Generator(device=like.device)
    for b in flags.nonzero().squeeze(1).tolist():
        gen.manual_seed(int(seeds[b]))
        out[b] = torch.randn(like.shape[1:], generator=gen, device=like.device, dtype=like.dtype)
    return out


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    """A CPU generator for the augmentation of (seed, step, rank): a resumed run re-draws the same numbers.

    The three are mixed by a splitmix-style hash, not added, so (seed, step) and (seed + 1, step − 1) differ.
    """
    h = (int(seed) * 0x9E3779B97F4A7C15 + int(step) * 0xBF58476D1CE4E5B9 + int(rank) * 0x94D049BB133111EB) % 2**64
    h ^= h >> 31
    return torch.Generator().manual_seed(h % (2**63 - 1))


class BatchAugment:
    """The loop's ``batch_transform`` for batches with ``image`` and ``mask`` (B, 1, H, W): augments them on device.

    Called as ``hook(batch, step)`` after the batch reaches the device; the generator is seeded from
    (seed, step, rank) — per rank because ranks hold different samples — so a resumed run augments step s exactly
    as the uninterrupted run did.
    """

    def __init__(self, cfg: AugmentConfig, seed: int, rank: int = 0) -> None:
        self.augment = DeviceAugment(cfg)
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        """The batch with ``image`` and ``mask`` augmented, float32 whatever they came as (compact items: float16
        images and uint8 masks, ``SliceDataset(compact=True)``)."""
        images, masks = self.augment(batch["image"], batch.get("mask"), step_generator(self.seed, step, self.rank))
        out = dict(batch)
        out["image"] = images.float()
        if masks is not None:
            out["mask"] = masks.float()
        return out


class DetectionBatchAugment:
    """The loop's ``batch_transform`` for detection batches: ``image`` (B, 1, H, W) in [0, 1], ``boxes`` and
    ``labels`` lists of (N_i, 4) xyxy and (N_i,) per image (``detection_collate``), or a dict of such batches (a
    CoMoTo pair: ``dbt`` and ``mammo``, each drawn in turn from the step's generator).

    Images get :class:`DeviceAugment`; each image's boxes follow its flips and rotation (``box_geometry``: the
    box enclosing the rotated box, clipped; boxes rotated out of the frame dropped with their labels).
    """

    def __init__(self, cfg: AugmentConfig, seed: int, rank: int = 0) -> None:
        self.augment = DeviceAugment(cfg)
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, batch: dict[str, Any], step: int) -> dict[str, Any]:
        if not self.augment.cfg.enabled:
            return batch
        return self._part(batch, step_generator(self.seed, step, self.rank))

    def _part(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, Any]:
        if "image" not in batch:  # a paired batch: its parts in the collate's (fixed) key order
            return {k: self._part(v, generator) for k, v in batch.items()}
        return self.apply(batch, self.augment.draw(batch["image"].shape[0], generator))

    def apply(self, batch: dict[str, Any], params: dict[str, Tensor]) -> dict[str, Any]:
        """One detection batch (not a pair) augmented with ``params`` (``DeviceAugment.draw``'s)."""
        from .box_geometry import transform_boxes

        images, _ = self.augment.apply(batch["image"], None, params)
        size = (images.shape[-2], images.shape[-1])
        # boxes are a few numbers per image: moved once to the CPU and back, not ~20 tiny kernels per image on a GPU
        dev = batch["boxes"][0].device if len(batch["boxes"]) else images.device
        boxes, labels = [], []
        for b, (box, label) in enumerate(zip(_cpu(batch["boxes"]), _cpu(batch["labels"]), strict=True)):
            degrees = float(params["angle"][b]) if bool(params["rotate"][b]) else None
            moved, keep = transform_boxes(box, size, bool(params["hflip"][b]), bool(params["vflip"][b]), degrees)
            boxes.append(moved.to(box.dtype))
            labels.append(label[keep])
        boxes, labels = _to(boxes, dev), _to(labels, dev)
        return {**batch, "image": images.to(batch["image"].dtype), "boxes": boxes, "labels": labels}


def _cpu(parts: list[Tensor]) -> list[Tensor]:
    """Per-image tensors (N_i, ...) on the CPU, in one transfer."""
    if not parts or parts[0].device.type == "cpu":
        return list(parts)
    return list(torch.cat(list(parts)).cpu().split([len(p) for p in parts]))


def _to(parts: list[Tensor], device: torch.device) -> list[Tensor]:
    """Per-image CPU tensors on ``device``, in one transfer."""
    if not parts or device.type == "cpu":
        return parts
    return list(torch.cat(parts).to(device, non_blocking=True).split([len(p) for p in parts]))


__all__ = ["DeviceAugment", "BatchAugment", "DetectionBatchAugment", "step_generator", "rotate", "sharpen", "clahe"]
