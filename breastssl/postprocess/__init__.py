"""Post-processing of model outputs: dense CRF masks, and mammography prediction outputs."""

from .crf import CRFParams, crf_mask, crf_posterior, have_pydensecrf
from .crf_batch import crf_masks

__all__ = ["CRFParams", "crf_mask", "crf_masks", "crf_posterior", "have_pydensecrf"]
