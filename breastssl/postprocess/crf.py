"""Fully connected (dense) CRF: a lesion probability map → a binary mask (seed 002, stage 2.1).

The model of Krähenbühl & Koltun (NeurIPS 2011, the paper's ref. [15]) over two labels (background,
lesion). Energy of a labelling l::

    E(l) = Σ_i −log P_i(l_i) + Σ_{i<j} μ(l_i, l_j) · k(i, j),        μ = Potts ([l_i ≠ l_j])
    k(i, j) = w_b · exp(−|p_i − p_j|² / 2θ_α² − |I_i − I_j|² / 2θ_β²)     appearance (bilateral) kernel
            + w_g · exp(−|p_i − p_j|² / 2θ_γ²)                          smoothness (Gaussian) kernel

with P the network's probabilities, p pixel positions and I intensities (0–255 scale). Inference is
mean field: Q ← softmax(−U − Σ_j k(i, j)·(1 − Q_j)), ``iterations`` times; the mask is Q(lesion) > 0.5.
Each kernel is normalised symmetrically (D^{-1/2} K D^{-1/2}, pydensecrf's default), so w_g and w_b weigh
an average neighbourhood, not a sum that grows with θ.

Backends: ``pydensecrf`` (the authors' permutohedral-lattice C++ code, ``pip install pydensecrf2``), used
when importable; ``numpy``, the same mean field with the messages computed by separable Gaussian and
piecewise-linear bilateral filtering (``crf_filter.py``: no N² kernel, any map size); ``dense``, the exact
mean field with the N² kernel materialised on a map downsampled to at most ``max_pixels`` pixels (the
reference the others are tested against; tens of MB, small maps only).

Coarse inference (``scale``, ``max_side``): a network's map carries no detail finer than its decoder's
stride, so the CRF can run on the map and image area-downsampled by a factor f, with the kernel widths θ_α,
θ_γ divided by f (they are given in full-resolution pixels, so the result stays comparable), and Q upsampled
back (bilinear) before thresholding. Cost falls ~f². Batches of maps go through a process pool
(``crf_batch.crf_masks``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .crf_filter import mean_field, resize

EPS = 1e-5
BACKENDS = ("auto", "pydensecrf", "numpy", "dense")


@dataclass(frozen=True)
class CRFParams:
    """Kernel widths (pixels of the full-resolution map; intensities on a 0–255 scale) and weights.

    New fields go at the end: callers build this positionally up to ``iterations``.
    """

    sxy_gaussian: float = 1.5  # θ_γ
    compat_gaussian: float = 3.0  # w_g
    sxy_bilateral: float = 6.0  # θ_α
    srgb: float = 20.0  # θ_β
    compat_bilateral: float = 4.0  # w_b
    iterations: int = 5
    max_pixels: int = 4096  # dense backend: kernel grid size
    skip_below: float = 0.05  # maps whose max probability is below this give an empty mask without inference
    backend: str = "auto"  # auto | pydensecrf | numpy | dense
    scale: float = 1.0  # coarse inference: downsampling factor f ≥ 1 (kernel widths divided by f)
    # the grid's longer side is at most this (0: no limit); f = max(scale, longer side / max_side). 256 leaves
    # demo maps (≤ 128 px) at full resolution and runs a 1024×832 mammogram at ¼, its decoder's usual stride
    max_side: int = 256
    workers: int = 0  # process pool of crf_batch.crf_masks: 0 = one per usable core, 1 = in this process
    range_step: float = 0.5  # numpy backend: intensity levels of the bilateral filter, in units of srgb

    def with_(self, **kw: float | int | str) -> CRFParams:
        return replace(self, **kw)

    def factor(self, shape: tuple[int, int]) -> float:
        """The downsampling factor f ≥ 1 used for a map of this (H, W)."""
        f = max(1.0, float(self.scale))
        if self.max_side > 0:
            f = max(f, max(shape) / self.max_side)
        return f

    def coarse(self, f: float) -> CRFParams:
        """The parameters on a grid f× coarser: spatial widths in coarse pixels, no further downsampling."""
        return replace(
            self, sxy_gaussian=self.sxy_gaussian / f, sxy_bilateral=self.sxy_bilateral / f, scale=1.0, max_side=0
        )


def have_pydensecrf() -> bool:
    """Whether the C++ backend is importable."""
    try:
        import pydensecrf.densecrf  # noqa: F401
    except ImportError:
        return False
    return True


def _unary(prob: np.ndarray) -> np.ndarray:
    """(2, N) negative log-probabilities of background, lesion."""
    p = np.clip(prob.reshape(-1).astype(np.float32), EPS, 1.0 - EPS)
    return np.stack([-np.log1p(-p), -np.log(p)])


def _crf_pydensecrf(prob: np.ndarray, image: np.ndarray, prm: CRFParams) -> np.ndarray:
    import pydensecrf.densecrf as dcrf

    h, w = prob.shape
    crf = dcrf.DenseCRF2D(w, h, 2)
    crf.setUnaryEnergy(np.ascontiguousarray(_unary(prob)))
    crf.addPairwiseGaussian(sxy=prm.sxy_gaussian, compat=prm.compat_gaussian)
    rgb = np.ascontiguousarray(np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2))
    crf.addPairwiseBilateral(sxy=prm.sxy_bilateral, srgb=prm.srgb, rgbim=rgb, compat=prm.compat_bilateral)
    q = np.asarray(crf.inference(prm.iterations), dtype=np.float32).reshape(2, h, w)
    return q[1]


def _crf_numpy(prob: np.ndarray, image: np.ndarray, prm: CRFParams) -> np.ndarray:
    """Mean field by filtering (``crf_filter.mean_field``) at the map's own resolution: Q(lesion) (H, W)."""
    return mean_field(
        prob, image, prm.sxy_gaussian, prm.compat_gaussian, prm.sxy_bilateral, prm.srgb, prm.compat_bilateral,
        prm.iterations, prm.range_step,
    )  # fmt: skip


def _normalised(k):
    """D^{-1/2} K D^{-1/2} with D = row sums: pydensecrf's default NORMALIZE_SYMMETRIC (the pixel itself
    included, as its lattice filter includes it), which makes the weights independent of the kernel's width."""
    d = k.sum(dim=1).clamp_min(1e-20).rsqrt()
    return k * d[:, None] * d[None, :]


def _crf_dense(prob: np.ndarray, image: np.ndarray, prm: CRFParams) -> np.ndarray:
    """Exact mean field on a grid of at most ``max_pixels`` pixels; returns Q(lesion) at full size (H, W)."""
    import torch  # the reference only: the fast paths stay torch-free for forked workers

    h, w = prob.shape
    factor = max(1.0, math.sqrt(h * w / prm.max_pixels))
    gh, gw = max(1, int(h / factor)), max(1, int(w / factor))
    p_small, i_small = resize(prob, (gh, gw)), resize(image, (gh, gw))
    # positions in full-resolution pixels, so the θ's mean the same whatever the grid
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) * h / gh, (np.arange(gw) + 0.5) * w / gw, indexing="ij")
    pos = torch.from_numpy(np.stack([ys.ravel(), xs.ravel()], 1).astype(np.float32))
    inten = torch.from_numpy((np.clip(i_small, 0, 1) * 255).reshape(-1, 1).astype(np.float32))
    d_pos = torch.cdist(pos, pos).pow_(2)
    d_int = torch.cdist(inten, inten).pow_(2)
    smooth = _normalised(torch.exp(-d_pos / (2 * prm.sxy_gaussian**2)))
    appearance = _normalised(torch.exp(-d_pos / (2 * prm.sxy_bilateral**2) - d_int / (2 * prm.srgb**2)))
    kernel = prm.compat_gaussian * smooth + prm.compat_bilateral * appearance
    unary = torch.from_numpy(_unary(p_small).T.copy())  # (N, 2)
    q = torch.softmax(-unary, dim=1)
    for _ in range(prm.iterations):
        # Potts: label l pays w·Σ_j k(i, j)·(1 − Q_j(l)); the Σ_j k(i, j) part is the same for both labels and
        # cancels in the softmax, leaving the reward w·Σ_j k(i, j)·Q_j(l) that pydensecrf computes
        q = torch.softmax(-unary + kernel @ q, dim=1)
    return resize(q[:, 1].reshape(gh, gw).numpy(), (h, w))


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"crf backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    if name == "auto":
        return "pydensecrf" if have_pydensecrf() else "numpy"
    return name


def crf_posterior(prob: np.ndarray, image: np.ndarray | None = None, params: CRFParams | None = None) -> np.ndarray:
    """Q(lesion) after mean-field inference: (H, W) float32 in [0, 1].

    prob: (H, W) lesion probabilities; image: (H, W) intensities in [0, 1] for the appearance kernel
    (None: a flat image, i.e. the bilateral kernel becomes a second Gaussian). With a factor f > 1
    (``scale``/``max_side``) inference runs on an (H/f, W/f) grid and Q is upsampled back.
    """
    prm = params or CRFParams()
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 2:
        raise ValueError(f"crf: probability map must be (H, W), got shape {prob.shape}")
    image = np.zeros_like(prob) if image is None else np.asarray(image, dtype=np.float32)
    if image.shape != prob.shape:
        raise ValueError(f"crf: image {image.shape} and probability map {prob.shape} differ")
    if not np.isfinite(prob).all():
        raise ValueError("crf: probability map holds NaN or inf")
    run = {"pydensecrf": _crf_pydensecrf, "numpy": _crf_numpy, "dense": _crf_dense}[_backend(prm.backend)]
    f = prm.factor(prob.shape)
    if f <= 1.0:
        return run(prob, image, prm)
    h, w = prob.shape
    small = (max(1, round(h / f)), max(1, round(w / f)))
    f_actual = math.sqrt(h / small[0] * w / small[1])  # rounding moves it slightly off f
    q = run(resize(prob, small), resize(image, small), prm.coarse(f_actual))
    return resize(q, (h, w))


def crf_mask(prob: np.ndarray, image: np.ndarray | None = None, params: CRFParams | None = None) -> np.ndarray:
    """Binary mask (H, W) bool: the dense CRF's MAP labelling of a probability map (H, W)."""
    prm = params or CRFParams()
    if float(np.max(prob, initial=0.0)) < prm.skip_below:
        return np.zeros(np.shape(prob), dtype=bool)
    return crf_posterior(prob, image, prm) > 0.5
