"""Vendor appearance models for synthetic DBT and mammography.

The three DBT systems differ in ways that matter to a CNN (Sechopoulos 2013; Rodriguez-Ruiz 2018):
the tube's angular range sets the depth resolution (Hologic ~15°: structures smear over many slices;
GE ~25°; Siemens ~50°: sharp in depth), the reconstruction sets sharpness and noise texture, the
stored tone curve and bit depth differ, and the detector pixel pitch differs (Siemens 0.085 mm vs 0.1 mm),
which changes the matrix size; GE reconstructs thinner slices (0.5 mm here), so its stacks have about
twice as many slices. The numbers below are chosen so that these differences are of the same
order as in real data; they are not measurements of any product.
"""

from __future__ import annotations

from pydantic import Field

from ...config import Section


class VendorModel(Section):
    """How one vendor's system turns tissue attenuation into stored pixel values."""

    name: str
    manufacturer: str
    spacing_mm: float = Field(0.1, gt=0, description="detector pixel pitch at full resolution")
    slice_thickness_mm: float = Field(1.0, gt=0)
    angular_range_deg: float = Field(15.0, gt=0, description="tube sweep; sets out-of-plane blur")
    depth_spread: float = Field(
        1.0, gt=0, description="out-of-plane persistence of a structure, in slices per mm of half-thickness"
    )
    out_of_plane_blur: float = Field(0.6, ge=0, description="in-plane blur (px) gained per slice away from focus")
    tissue_z_smooth: float = Field(3.0, gt=0, description="z-correlation of tissue texture (frequency scale)")
    psf_sigma: float = Field(0.5, ge=0, description="in-plane blur of the reconstruction, px")
    noise_sigma: float = Field(0.03, ge=0, description="quantum noise std relative to the signal range")
    noise_grain: float = Field(0.6, ge=0, description="noise correlation length, px")
    tone: str = Field("log", pattern="^(log|gamma|sigmoid)$")
    tone_param: float = 4.0
    brightness: float = 0.0
    bits_stored: int = Field(12, ge=8, le=16)
    tissue_contrast: float = Field(1.0, gt=0, description="scale of fibroglandular vs fat contrast")


DBT_VENDORS: dict[str, VendorModel] = {
    "Hologic": VendorModel(
        name="Hologic",
        manufacturer="HOLOGIC, Inc. (synthetic)",
        spacing_mm=0.1,
        angular_range_deg=15,
        depth_spread=1.6,
        out_of_plane_blur=0.55,
        tissue_z_smooth=1.5,
        psf_sigma=0.45,
        noise_sigma=0.030,
        noise_grain=0.5,
        tone="log",
        tone_param=4.0,
        brightness=0.0,
        bits_stored=10,
        tissue_contrast=1.0,
    ),
    "GE": VendorModel(
        name="GE",
        manufacturer="GE HEALTHCARE (synthetic)",
        spacing_mm=0.1,
        slice_thickness_mm=0.5,
        angular_range_deg=25,
        depth_spread=1.2,
        out_of_plane_blur=0.75,
        tissue_z_smooth=2.0,
        psf_sigma=1.5,
        noise_sigma=0.022,
        noise_grain=1.0,
        tone="gamma",
        tone_param=0.7,
        brightness=0.04,
        bits_stored=12,
        tissue_contrast=1.1,
    ),
    "Siemens": VendorModel(
        name="Siemens",
        manufacturer="SIEMENS Healthineers (synthetic)",
        spacing_mm=0.085,
        angular_range_deg=50,
        depth_spread=0.7,
        out_of_plane_blur=1.0,
        tissue_z_smooth=3.0,
        psf_sigma=0.35,
        noise_sigma=0.09,
        noise_grain=0.3,
        tone="sigmoid",
        tone_param=7.0,
        brightness=-0.03,
        bits_stored=12,
        tissue_contrast=1.4,
    ),
}
