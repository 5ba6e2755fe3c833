"""Models: a registry of factories whose models return dicts (DESIGN §4).

Every model's ``forward(x)`` returns a dict with at least ``logits`` and ``features`` (and
``mask_logits`` when it segments), and ``parameter_groups()`` names its parts for per-group
learning rates.
"""

from __future__ import annotations

from . import bilateral as _bilateral  # noqa: F401  (registers the model)
from . import classifier_segmenter as _classifier_segmenter  # noqa: F401  (registers the model)
from . import recognition as _recognition  # noqa: F401  (registers the model)
from . import retinanet as _retinanet  # noqa: F401  (registers the model)
from . import tiny_cnn as _tiny_cnn  # noqa: F401  (registers the model)
from .classifier_segmenter import ClassifierSegmenter, TimmEncoder
from .config import ModelConfig, build_model
from .registry import create_model, list_models, model_entry, register_model
from .tiny_cnn import TinyEncoder

__all__ = [
    "ClassifierSegmenter",
    "ModelConfig",
    "TimmEncoder",
    "TinyEncoder",
    "build_model",
    "create_model",
    "list_models",
    "model_entry",
    "register_model",
]
