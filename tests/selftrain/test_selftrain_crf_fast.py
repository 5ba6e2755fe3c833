"""Fast CRF paths: the filtered NumPy mean field, coarse inference, the worker pool (DESIGN §5.2 mining).

Agreement thresholds come from ``benchmarks/bench_crf.py`` (synthetic mammograms, run on this project's
2-core machine): at the paper's size (1024×832) the coarse paths at f = 4 agreed with full-resolution
pydensecrf at pooled mask IoU 0.95 (pydensecrf) and 0.93 (NumPy), every mining decision (mask empty or
not) the same. The tests run at half that size (512×416, f = 2 under the default max side 256) with
thresholds ~0.1 below those figures.
"""

from __future__ import annotations

import numpy as np
import pytest

from breastssl.postprocess import CRFParams, crf_mask, crf_masks, crf_posterior, have_pydensecrf
from breastssl.postprocess.crf_filter import resize
from breastssl.postprocess.crf_scenes import mammo_scenes


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


@pytest.fixture(scope="module")
def demo():
    return mammo_scenes(6, 96, 64, seed=0)


@pytest.fixture(scope="module")
def half_paper():
    return mammo_scenes(3, 512, 416, seed=0)


def test_filtered_numpy_agrees_with_the_exact_dense_kernel():
    """Same maths as the N² kernel (a grid small enough for the dense path to run at full resolution)."""
    images, maps, _ = mammo_scenes(8, 64, 48, seed=1)
    fast = np.stack([crf_posterior(p, i, CRFParams(backend="numpy")) for p, i in zip(maps, images, strict=True)])
    exact = np.stack([crf_posterior(p, i, CRFParams(backend="dense")) for p, i in zip(maps, images, strict=True)])
    assert (exact > 0.5).sum() > 10  # something to agree on
    assert np.abs(fast - exact).max() < 0.1 and _iou(fast > 0.5, exact > 0.5) > 0.9, np.abs(fast - exact).max()


def test_resize_is_area_down_and_bilinear_up():
    x = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(resize(x, (2, 2)), [[2.5, 4.5], [10.5, 12.5]])  # 2×2 block means
    up = resize(np.array([[0.0, 1.0]], np.float32), (1, 4))
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])  # half-pixel centres, edges clamped


def test_coarse_factor_and_scaled_widths():
    prm = CRFParams()
    assert prm.factor((96, 64)) == 1.0 and prm.factor((1024, 832)) == 4.0  # max_side 256
    assert CRFParams(scale=3, max_side=0).factor((96, 64)) == 3.0
    c = prm.coarse(4.0)
    assert (c.sxy_gaussian, c.sxy_bilateral, c.srgb, c.factor((10**4, 10**4))) == (0.375, 1.5, prm.srgb, 1.0)


def test_pool_gives_the_serial_masks_in_order(demo):
    images, maps, _ = demo
    prm = CRFParams(backend="numpy")
    serial = crf_masks(maps, images, prm, min_area=4, workers=1)
    pooled = crf_masks(maps, images, prm, min_area=4, workers=2)
    np.testing.assert_array_equal(serial, pooled)
    np.testing.assert_array_equal(serial[2], crf_mask(maps[2], images[2], prm) & serial[2])
    assert serial.any(axis=(1, 2)).sum() >= 3  # the scenes are not trivially empty


@pytest.mark.skipif(not have_pydensecrf(), reason="pydensecrf not installed")
@pytest.mark.parametrize(("backend", "threshold"), [("pydensecrf", 0.85), ("numpy", 0.8)])
def test_coarse_paths_agree_with_full_resolution_pydensecrf(half_paper, backend, threshold):
    images, maps, _ = half_paper
    width = 512 / 96  # kernel widths scaled with the image, as at the paper's size
    base = CRFParams(sxy_gaussian=1.5 * width, sxy_bilateral=6.0 * width)
    exact = crf_masks(maps, images, base.with_(backend="pydensecrf", max_side=0), workers=1)
    fast = crf_masks(maps, images, base.with_(backend=backend), workers=1)  # default max_side 256: f = 2
    assert _iou(fast, exact) > threshold
    np.testing.assert_array_equal(fast.any(axis=(1, 2)), exact.any(axis=(1, 2)))
