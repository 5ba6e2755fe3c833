"""Report → soft label (seed 002, §3.2): a text classifier per breast side, k-fold ensembled.

``report_examples`` turns a manifest with ``report_path`` into one row per exam × side (description,
impression, label); ``label_reports`` trains ``k`` fold models per side (a fine-tuned transformer,
default the offline MiniLM, or the TF-IDF + logistic-regression baseline), averages them into one
soft label per exam × side and reports average F1, weighted F1 and accuracy per side.
"""

from .kfold import LabelResult, label_reports
from .text import SIDES, report_examples, split_sections
from .tfidf import TfidfLabeller
from .transformer import TransformerLabeller, default_model_path

__all__ = [
    "SIDES",
    "LabelResult",
    "TfidfLabeller",
    "TransformerLabeller",
    "default_model_path",
    "label_reports",
    "report_examples",
    "split_sections",
]
