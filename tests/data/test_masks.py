"""Lesion masks are read from PNG and from DICOM (CBIS-DDSM ships its ROI masks as DICOM); a file that is neither
is a named error, not a PIL traceback."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SOP_MG, make_ds, save
from PIL import Image

from breastssl.data.masks import read_mask
from breastssl.errors import DataError


def test_png_and_dicom_masks_read_the_same(tmp_path):
    truth = np.zeros((20, 16), bool)
    truth[5:12, 4:9] = True
    Image.fromarray((truth * 255).astype(np.uint8)).save(tmp_path / "m.png")
    save(make_ds((truth * 255).astype(np.uint16), SOP_MG, "MG", "MONOCHROME2", 16), tmp_path / "m.dcm")
    assert np.array_equal(read_mask(tmp_path / "m.png"), truth)
    assert np.array_equal(read_mask(tmp_path / "m.dcm"), truth)


def test_a_mask_that_is_not_an_image_is_a_named_error(tmp_path):
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(DataError, match="text.png: lesion mask is not a readable image"):
        read_mask(tmp_path / "text.png")
    with pytest.raises(DataError, match="gone.png: lesion mask does not exist"):
        read_mask(tmp_path / "gone.png")
