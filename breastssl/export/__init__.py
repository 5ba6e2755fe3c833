"""Export trained models to ONNX and run the exported files (``breastssl export``).

- :func:`export_onnx`: any model (dict / list / tensor outputs) → one ``.onnx`` file, outputs named by key.
- :func:`export_model`: a breastssl model of any kind (image, two-view, RetinaNet, Faster R-CNN) → ``.onnx``.
- :class:`OnnxModel`: onnxruntime behind the torch model's call signature and output structure.
- :func:`parity`: the largest difference between a torch model and its export (detections matched as sets).
- :func:`load_run`: the models of a run dir or bundle file, ready to export.
"""

from __future__ import annotations

from .onnx_export import (
    EXPORTER,
    OPSET,
    ExportInfo,
    ExportSpec,
    example_inputs,
    export_model,
    export_onnx,
    match_detections,
    max_opset,
    model_spec,
    parity,
)
from .runs import ExportItem, load_run
from .runtime import OnnxModel

__all__ = [
    "EXPORTER",
    "OPSET",
    "ExportInfo",
    "ExportItem",
    "ExportSpec",
    "OnnxModel",
    "example_inputs",
    "export_model",
    "export_onnx",
    "load_run",
    "match_detections",
    "max_opset",
    "model_spec",
    "parity",
]
