"""Dense CRF: cleaner than thresholding on a noisy map with a clear object; parameters matter."""

from __future__ import annotations

import numpy as np
import pytest

from breastssl.postprocess import CRFParams, crf_mask, have_pydensecrf


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:48, :40]
    obj = (yy - 22) ** 2 + (xx - 18) ** 2 < 7**2
    image = 0.3 + 0.4 * obj + rng.normal(0, 0.03, obj.shape)
    prob = np.clip(0.15 + 0.55 * obj + rng.normal(0, 0.22, obj.shape), 0, 1)
    return obj, image, prob


def _errors(mask, obj) -> int:
    return int((mask != obj).sum())


@pytest.mark.parametrize("backend", ["numpy", "pydensecrf"])
def test_crf_mask_is_cleaner_than_thresholding(backend):
    if backend == "pydensecrf" and not have_pydensecrf():
        pytest.skip("pydensecrf not installed")
    obj, image, prob = _scene()
    thresholded = _errors(prob > 0.5, obj)
    crf = _errors(crf_mask(prob, image, CRFParams(backend=backend)), obj)
    assert thresholded > 50 and crf < thresholded / 5, (thresholded, crf)


def test_parameters_change_the_result_and_no_pairwise_is_thresholding():
    obj, image, prob = _scene(1)
    base = crf_mask(prob, image, CRFParams(backend="numpy"))
    off = crf_mask(prob, image, CRFParams(backend="numpy", compat_gaussian=0, compat_bilateral=0))
    np.testing.assert_array_equal(off, prob > 0.5)  # no pairwise term: the MAP labelling is the unary argmax
    strong = crf_mask(prob, image, CRFParams(backend="numpy", compat_gaussian=10, sxy_gaussian=4, iterations=10))
    assert (base != off).sum() > 0 and (strong != base).sum() > 0


def test_degenerate_input():
    assert not crf_mask(np.full((8, 8), 0.01)).any()  # below skip_below: empty without inference
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        crf_mask(np.zeros((2, 8, 8)) + 0.5)
    with pytest.raises(ValueError, match="NaN"):
        crf_mask(np.full((8, 8), np.nan))


@pytest.mark.skipif(not have_pydensecrf(), reason="pydensecrf not installed")
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_backend_agrees_with_pydensecrf(seed):
    """The exact mean field against the permutohedral-lattice one: same energy, normalisation and updates."""
    obj, image, prob = _scene(seed)
    a = crf_mask(prob, image, CRFParams(backend="numpy"))
    b = crf_mask(prob, image, CRFParams(backend="pydensecrf"))
    assert (a & b).sum() / max((a | b).sum(), 1) > 0.9, ((a != b).sum(), a.sum(), b.sum())
