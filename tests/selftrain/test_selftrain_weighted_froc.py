"""Per-image detections and the weighted FROC that bootstraps them: equal to the plain FROC at unit weights."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from breastssl.metrics import FPPI_TARGETS, froc_2d_maps
from breastssl.strategies.self_training_detections import Detections, image_detections, weighted_froc
from breastssl.strategies.self_training_lesions import froc_swept


def _toy_maps(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Maps (n, 32, 24) with blurred blobs near some lesions and some elsewhere, masks (n, 32, 24)."""
    rng = np.random.default_rng(seed)
    maps, masks = np.zeros((n, 32, 24)), np.zeros((n, 32, 24), np.uint8)
    for i in range(n):
        for _ in range(rng.integers(0, 3)):  # lesions
            y, x = rng.integers(4, 28), rng.integers(4, 20)
            masks[i, y - 2 : y + 3, x - 2 : x + 3] = 1
            if rng.random() < 0.7:  # found, more or less where it is
                maps[i, y + rng.integers(-1, 2), x + rng.integers(-1, 2)] += rng.uniform(2, 12)
        for _ in range(rng.integers(0, 3)):  # false positives
            maps[i, rng.integers(0, 32), rng.integers(0, 24)] += rng.uniform(1, 8)
        maps[i] = np.clip(ndimage.gaussian_filter(maps[i], 1.5) + rng.uniform(0, 0.02, (32, 24)), 0, 1)
    return maps, masks


def _ids(n: int) -> list[str]:
    return [f"img{i}" for i in range(n)]


@pytest.mark.parametrize("t", [0.25, 0.1])
def test_unit_weights_equal_froc_swept(t):
    maps, masks = _toy_maps()
    det = image_detections(maps, masks, t, _ids(len(maps)))
    ref = froc_swept(maps, masks, t)
    got = weighted_froc(det, np.ones((1, len(maps))))[0]
    assert np.allclose(got, [*(ref["sens"][f"{x:g}"] for x in FPPI_TARGETS), ref["mean"]], atol=1e-12)
    assert det.n_lesions.sum() == ref["n_lesions"]


def test_without_sweep_equals_froc_2d_maps():
    maps, masks = _toy_maps(seed=3)
    det = image_detections(maps, masks, 0.2, _ids(len(maps)), grid=())
    ref = froc_2d_maps(list(maps), list(masks), threshold=0.2)
    got = weighted_froc(det, np.ones(len(maps)))[0]
    assert np.allclose(got[:4], [ref.sensitivity_at[x] for x in FPPI_TARGETS])
    assert np.isclose(got[4], ref.mean_sensitivity)


def test_integer_weights_equal_duplicated_images():
    """Weight k on an image = the image k times: what a bootstrap replicate's counts mean."""
    maps, masks = _toy_maps(seed=5)
    w = np.random.default_rng(1).integers(0, 3, len(maps))
    w[0] = max(w[0], 1)
    rep = np.repeat(np.arange(len(maps)), w)
    det = image_detections(maps, masks, 0.25, _ids(len(maps)))
    ref = froc_swept(maps[rep], masks[rep], 0.25)
    got = weighted_froc(det, np.stack([w.astype(float), np.ones(len(maps))]))
    assert np.allclose(got[0], [*(ref["sens"][f"{x:g}"] for x in FPPI_TARGETS), ref["mean"]], atol=1e-12)


def test_detections_round_trip(tmp_path):
    maps, masks = _toy_maps(n=6)
    det = image_detections(maps, masks, 0.25, _ids(6))
    det.save(tmp_path / "d.npz")
    back = Detections.load(tmp_path / "d.npz")
    assert back.threshold == 0.25 and back.image_ids.tolist() == _ids(6)
    assert np.array_equal(weighted_froc(back, np.ones(6)), weighted_froc(det, np.ones(6)))
