"""Helpers for the generator's previews and mask files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def save_mask(path: Path, mask: np.ndarray) -> None:
    """A binary mask as an 8-bit PNG (0 / 255)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


def load_pixels(path: Path) -> np.ndarray:
    """Stored pixels of a generated file (.npy or DICOM), without any LUT applied."""
    if path.suffix == ".npy":
        return np.load(path)
    import pydicom

    return pydicom.dcmread(path).pixel_array


def montage(panels: list[tuple[np.ndarray, str, tuple | None]], png: Path, ncols: int = 4) -> None:
    """Grid of (image, title, optional (x, y, w, h) box) panels, each windowed to its 1–99.5 percentiles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = max(1, int(np.ceil(len(panels) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (img, title, box) in zip(axes.flat, panels, strict=False):
        rgb = img.ndim == 3 and img.shape[-1] == 3
        if rgb:
            ax.imshow(img)
        else:
            vals = img[img > 0] if (img > 0).any() else img.ravel()
            ax.imshow(img, cmap="gray", vmin=np.percentile(vals, 1), vmax=np.percentile(vals, 99.5))
        if box is not None:
            import matplotlib.patches as patches

            x, y, w, h = box
            ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="red", lw=0.8))
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
