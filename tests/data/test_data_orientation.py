"""Orientation normalisation and preprocessing geometry: boxes and masks follow the image."""

from __future__ import annotations

import numpy as np
from conftest import breast

from breastssl.data.dicom import Image
from breastssl.data.orientation import Flip, canonical_flip, chest_wall_side
from breastssl.data.preprocess import Geometry, prepare


def _with_lesion(side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = breast(40, 32, side).astype(np.float32) / 4000
    mask = np.zeros_like(img, dtype=np.uint8)
    mask[10:14, 5:9] = 1 if side == "left" else 0
    if side == "right":
        mask[10:14, 23:27] = 1
    img[mask > 0] = 2.0  # a marked lesion
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]], dtype=float)
    return img, mask, box


def test_chest_wall_side_and_canonical_flip() -> None:
    assert chest_wall_side(breast(side="left"))[0] == "left"
    assert chest_wall_side(breast(side="right"))[0] == "right"
    assert canonical_flip(breast(side="right")).horizontal and not canonical_flip(breast(side="left")).horizontal
    assert not canonical_flip(breast(side="right"), modality="US").horizontal
    assert canonical_flip(breast(), patient_orientation=["A", "H"]).vertical


def test_flip_moves_boxes_and_masks_with_the_image() -> None:
    img, mask, box = _with_lesion("right")
    for flip in (Flip(img.shape, True, False), Flip(img.shape, False, True), Flip(img.shape, True, True)):
        out, m = flip.image(img), flip.mask(mask)
        x, y, w, h = flip.boxes(box)[0].astype(int)
        assert (out[y : y + h, x : x + w] == 2.0).all() and m[y : y + h, x : x + w].all() and m.sum() == mask.sum()
        np.testing.assert_allclose(flip.boxes(flip.boxes(box)), box)  # a flip is its own inverse
    stack = np.stack([img, img * 0.5])
    assert np.array_equal(Flip(img.shape, True).image(stack)[1], Flip(img.shape, True).image(img * 0.5))


def test_prepare_geometry_maps_boxes_and_masks() -> None:
    img, mask, box = _with_lesion("right")
    arr, geo = prepare(Image(img, {"modality": "MG", "photometric": "MONOCHROME2"}), (80, 64))
    assert isinstance(geo, Geometry) and geo.flip.horizontal and arr.shape == (80, 64)
    m = geo.mask(mask)
    x, y, w, h = geo.boxes(box)[0]
    ys, xs = np.nonzero(m)
    assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1 and abs(xs.max() + 1 - (x + w)) <= 1
    assert arr[ys, xs].mean() > 1.5  # the lesion's bright pixels land under the mapped mask
    assert geo.to_dict()["flip"]["horizontal"] is True


def test_prepare_colour_and_stack_shapes() -> None:
    rgb = np.random.default_rng(0).random((30, 40, 3)).astype(np.float32)
    arr, geo = prepare(Image(rgb, {"modality": "US", "photometric": "RGB", "us_region": (5, 5, 34, 24)}), (16, 16))
    assert arr.shape == (16, 16, 3) and geo.crop == (5, 25, 5, 35)
    stack = np.stack([breast(side="right").astype(np.float32) / 4000] * 3)
    arr, geo = prepare(Image(stack, {"modality": "DBT"}), (20, 16))
    assert arr.shape == (3, 20, 16) and geo.flip.horizontal
