"""ONNX export of every breastssl model kind, with the output structure kept in the file.

Exporter: torch's legacy TorchScript exporter (``torch.onnx.export(..., dynamo=False)``). The dynamo exporter
(torch ≥ 2.9's default) needs the ``onnxscript`` package and, for the detectors, data-dependent shapes
(score thresholds, NMS) that ``torch.export`` cannot trace without rewriting torchvision's post-processing;
the TorchScript exporter traces torchvision's detection code, which carries ONNX-specific paths (``NonMaxSuppression``,
``TopK`` with a traced ``k``), so the detectors are exported whole, post-processing included.

Model kinds (:func:`model_spec`):

- ``image``: a classifier-segmenter style model, ``forward(x)`` → dict; x (B, C, H, W), dynamic batch.
- ``two_view``: ``forward(x, aux)`` (the bilateral two-view net); inputs ``image`` and ``aux``, both (B, C, H, W).
- ``detector``: a model whose eval output holds per-image ``detections`` (RetinaNet). Tracing unrolls its per-image
  loops, so it is exported for ONE image (1, C, H, W); :class:`breastssl.export.OnnxModel` runs it per image.
- ``faster_rcnn``: :class:`breastssl.models.detection.NoduleDetector`, one image (1, C, H, W) with dynamic H and W
  (torchvision's transform resizes inside the graph); outputs per-image ``boxes``, ``scores``, ``labels``.

Nested outputs (dicts, lists of feature maps, per-image detection dicts) are flattened into ONNX outputs named by
their path (``logits``, ``mask_logits``, ``features.0``, ``detections.0.boxes``); the nesting, and the non-tensor
entries (e.g. RetinaNet's ``stride``), are stored as JSON in the model's metadata (key ``breastssl``) so the
runtime gives back the torch model's structure.
"""

from __future__ import annotations

import inspect
import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..fsutil import atomic_file

OPSET = 17
META_KEY = "breastssl"
EXPORTER = "torchscript"  # torch.onnx.export(dynamo=False); see the module docstring


def max_opset() -> int:
    """The newest opset the TorchScript exporter writes (20 for torch 2.5 to 2.15); newer ones are refused."""
    try:
        from torch.onnx import _constants  # private, hence the fallback

        return int(_constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)
    except (ImportError, AttributeError):
        return 20


@dataclass
class ExportSpec:
    """How a model kind is traced and called: input names, batch handling, per-image output keys."""

    kind: str
    input_names: list[str]
    per_image: bool = False  # exported for one image; the runtime loops over the batch
    dynamic_hw: bool = False  # H and W are dynamic axes of the inputs
    image_lists: list[str] = field(default_factory=list)  # output keys holding one entry per image


def model_spec(model: nn.Module) -> ExportSpec:
    """The export spec of ``model``, from its class and its forward signature (new models get one automatically)."""
    from ..models.detection import NoduleDetector
    from ..models.retinanet import RetinaNetDetector

    if isinstance(model, NoduleDetector):
        return ExportSpec("faster_rcnn", ["image"], True, True, ["boxes", "scores", "labels"])
    if isinstance(model, RetinaNetDetector):
        return ExportSpec("detector", ["image"], True, False, ["detections"])
    if "aux" in inspect.signature(model.forward).parameters:
        return ExportSpec("two_view", ["image", "aux"])
    return ExportSpec("image", ["image"])


# --- output structure: flatten to named tensors + a JSON template, and back -------------------------------------


def flatten_outputs(obj: Any, prefix: str = "", leaves: list[tuple[str, Tensor]] | None = None) -> Any:
    """Append ``(path, tensor)`` of every tensor in ``obj`` to ``leaves``; return the JSON template of ``obj``.

    Template nodes: ``{"t": name}`` a tensor, ``{"d": {...}}`` a dict, ``{"l": [...]}`` a list or tuple,
    ``{"c": value}`` a constant (int, float, bool, str, None).
    """
    leaves = [] if leaves is None else leaves

    def name(key: Any) -> str:
        return f"{prefix}.{key}" if prefix else str(key)

    if isinstance(obj, Tensor):
        leaves.append((prefix or "output", obj))
        return {"t": prefix or "output"}
    if isinstance(obj, dict):
        return {"d": {str(k): flatten_outputs(v, name(k), leaves) for k, v in obj.items()}}
    if isinstance(obj, list | tuple):
        return {"l": [flatten_outputs(v, name(i), leaves) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, bool | int | float | str):
        return {"c": obj}
    raise TypeError(f"cannot export a model output of type {type(obj).__name__} (at {prefix or 'the top'})")


def unflatten_outputs(template: Any, tensors: dict[str, Tensor]) -> Any:
    """Rebuild the structure described by ``template`` (see :func:`flatten_outputs`) from named tensors."""
    if "t" in template:
        return tensors[template["t"]]
    if "d" in template:
        return {k: unflatten_outputs(v, tensors) for k, v in template["d"].items()}
    if "l" in template:
        return [unflatten_outputs(v, tensors) for v in template["l"]]
    return template["c"]


class _Flat(nn.Module):
    """Wraps a model so that its forward returns the flat tuple of output tensors (what the tracer needs)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        leaves: list[tuple[str, Tensor]] = []
        flatten_outputs(self.model(*inputs), "", leaves)
        return tuple(t for _, t in leaves)


# --- export ------------------------------------------------------------------------------------------------------


def export_onnx(
    model: nn.Module,
    example_inputs: Sequence[Tensor],
    path: str | Path,
    *,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_batch: bool = True,
    dynamic_hw: bool = False,
    opset: int = OPSET,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Export ``model`` (eval mode) traced on ``example_inputs`` to ``path``, atomically; returns ``path``.

    example_inputs: tensors (B, C, H, W). Outputs may be a tensor or any nesting of dicts / lists of tensors; they
    are named by their path (:func:`flatten_outputs`) unless ``output_names`` gives one name per tensor. The
    batch axis (0) of inputs and outputs is dynamic when ``dynamic_batch``; H and W (axes 2, 3) of the inputs
    when ``dynamic_hw``. ``metadata`` goes into the model's metadata as JSON under ``breastssl``, together with
    the output template. The model's train/eval mode is restored afterwards.
    """
    import onnx

    if not OPSET <= opset <= max_opset():
        raise ValueError(f"opset {opset} is not supported: choose {OPSET} to {max_opset()}")
    inputs = tuple(example_inputs)
    names_in = list(input_names or (["image"] if len(inputs) == 1 else [f"input{i}" for i in range(len(inputs))]))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            leaves: list[tuple[str, Tensor]] = []
            template = flatten_outputs(model(*inputs), "", leaves)
        names_out = [n for n, _ in leaves]
        if output_names is not None:
            if len(output_names) != len(names_out):
                raise ValueError(f"output_names has {len(output_names)} names, the model returns {len(names_out)}")
            rename = dict(zip(names_out, output_names, strict=True))
            names_out = list(output_names)
            template = _rename(template, rename)
        axes: dict[str, dict[int, str]] = {}
        for n in names_in:
            axes[n] = ({0: "batch"} if dynamic_batch else {}) | ({2: "height", 3: "width"} if dynamic_hw else {})
        if dynamic_batch:
            axes |= {n: {0: "batch"} for n, (_, t) in zip(names_out, leaves, strict=True) if t.dim() >= 1}
        axes = {k: v for k, v in axes.items() if v}
        path = Path(path)
        with atomic_file(path) as tmp, warnings.catch_warnings():
            # the TorchScript exporter's deprecation notice and tracer warnings about Python scalars are expected:
            # the traced graph is checked against the model by the parity check, not by these warnings
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Flat(model).eval(), inputs, str(tmp), dynamo=False, opset_version=opset, input_names=names_in,
                output_names=names_out, dynamic_axes=axes or None, do_constant_folding=True,
            )  # fmt: skip
            proto = onnx.load(str(tmp))
            meta = {**(metadata or {}), "template": template, "outputs": names_out, "inputs": names_in}
            entry = proto.metadata_props.add()
            entry.key, entry.value = META_KEY, json.dumps(meta)
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
    finally:
        model.train(was_training)
    return path


def _rename(template: Any, rename: dict[str, str]) -> Any:
    if "t" in template:
        return {"t": rename[template["t"]]}
    if "d" in template:
        return {"d": {k: _rename(v, rename) for k, v in template["d"].items()}}
    if "l" in template:
        return {"l": [_rename(v, rename) for v in template["l"]]}
    return template


def example_inputs(spec: ExportSpec, shape: Sequence[int], seed: int = 0) -> list[Tensor]:
    """Random inputs in [0, 1) of ``shape`` (B, C, H, W), one per model input (B forced to 1 for per-image kinds)."""
    b, c, h, w = (int(s) for s in shape)
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(1 if spec.per_image else b, c, h, w, generator=gen) for _ in spec.input_names]


@dataclass
class ExportInfo:
    """What :func:`export_model` wrote: the file and how to call it."""

    path: str
    kind: str
    spec: dict[str, Any]
    input_shape: list[int]
    opset: int
    exporter: str = EXPORTER


def export_model(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    *,
    name: str | None = None,
    opset: int = OPSET,
) -> ExportInfo:
    """Export any breastssl model to ``path``: the kind is found by :func:`model_spec`.

    input_shape: (B, C, H, W) of one input; B is the traced batch (dynamic for dense kinds, 1 for detectors).
    ``name`` (e.g. the registry name) is recorded in the metadata as the model kind.
    """
    spec = model_spec(model)
    inputs = example_inputs(spec, input_shape)
    kind = name or type(model).__name__
    meta = {"kind": kind, "spec": asdict(spec), "input_shape": list(inputs[0].shape), "exporter": EXPORTER}
    export_onnx(
        model, inputs, path, input_names=spec.input_names, dynamic_batch=not spec.per_image,
        dynamic_hw=spec.dynamic_hw, opset=opset, metadata=meta,
    )  # fmt: skip
    return ExportInfo(str(path), kind, asdict(spec), list(inputs[0].shape), opset)


# --- parity -------------------------------------------------------------------------------------------------------


def match_detections(ref: dict[str, Tensor], got: dict[str, Tensor], score_tol: float = 1e-5) -> dict[str, float]:
    """Match two detection sets of one image; returns the largest box / score difference, unmatched and tied counts.

    ref, got: ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,). Each reference detection (highest score first)
    takes the unused detection of the same label with a score within ``score_tol`` and the closest box (L∞).
    Detections are compared as sets because the order of equal scores is not defined across runtimes. A reference
    score shared (within ``score_tol``) by another detection is *tied*: which of the tied boxes survive top-k and
    NMS is arbitrary (an untrained head gives every anchor the prior score), so tied boxes count in ``tied`` and
    not in ``max_box_diff``.
    """
    rs, gs = ref["scores"].float(), got["scores"].float()
    used: set[int] = set()
    box_diff, score_diff, tied = 0.0, 0.0, 0
    for i in torch.argsort(rs, descending=True).tolist():
        cands = [j for j in range(len(gs)) if j not in used and int(got["labels"][j]) == int(ref["labels"][i])]
        if not cands:
            continue
        dist = {j: float((got["boxes"][j] - ref["boxes"][i]).abs().max()) for j in cands}
        best = min(cands, key=lambda j: (float((gs[j] - rs[i]).abs()) > score_tol, dist[j]))
        used.add(best)
        score_diff = max(score_diff, float((gs[best] - rs[i]).abs()))
        if int(((rs - rs[i]).abs() <= score_tol).sum()) > 1:
            tied += 1
        else:
            box_diff = max(box_diff, dist[best])
    unmatched = len(rs) - len(used) + len(gs) - len(used)
    return {"max_box_diff": box_diff, "max_score_diff": score_diff, "unmatched": unmatched, "tied": tied}


def detection_sets(out: dict[str, Any], spec: ExportSpec) -> list[dict[str, Tensor]]:
    """Per-image detection dicts of a detector's output (RetinaNet's ``detections`` or Faster R-CNN's lists)."""
    if spec.image_lists == ["detections"]:
        return list(out["detections"])
    return [{k: out[k][i] for k in spec.image_lists} for i in range(len(out[spec.image_lists[0]]))]


def _dense(obj: Any, skip: Sequence[str], prefix: str = "") -> dict[str, Tensor]:
    leaves: list[tuple[str, Tensor]] = []
    flatten_outputs({k: v for k, v in obj.items() if k not in skip} if isinstance(obj, dict) else obj, prefix, leaves)
    return dict(leaves)


def parity(model: nn.Module, onnx_model: Any, inputs: Sequence[Tensor]) -> dict[str, Any]:
    """Run ``model`` (torch, eval) and ``onnx_model`` (an :class:`OnnxModel`) on ``inputs``; compare every output.

    Returns ``max_abs_diff`` over the dense outputs (logits, maps, features), ``max_rel_diff`` (each output's
    difference divided by max(1, its largest magnitude): unnormalised ResNet-50 features reach a few hundred, where
    float32 rounding alone differs by ~1e-3), ``outputs`` (the abs difference per output) and, for detectors,
    ``detections``: the worst :func:`match_detections` figures over the images plus the detection count.
    """
    spec = model_spec(model)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
    model.train(was_training)
    got = onnx_model(*inputs)
    a, b = _dense(ref, spec.image_lists), _dense(got, spec.image_lists)
    if a.keys() != b.keys():
        raise AssertionError(f"ONNX outputs {sorted(b)} differ from the torch outputs {sorted(a)}")
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) if a[k].numel() else 0.0 for k in a}
    scale = {k: max(1.0, float(a[k].float().abs().max())) if a[k].numel() else 1.0 for k in a}
    result: dict[str, Any] = {
        "max_abs_diff": max(diffs.values(), default=0.0),
        "max_rel_diff": max((diffs[k] / scale[k] for k in a), default=0.0),
        "outputs": diffs,
    }
    if spec.image_lists:
        sets = list(zip(detection_sets(ref, spec), detection_sets(got, spec), strict=True))
        per = [match_detections(r, g) for r, g in sets]
        result["detections"] = {k: max((p[k] for p in per), default=0.0) for k in ("max_box_diff", "max_score_diff")}
        for k in ("unmatched", "tied"):
            result["detections"][k] = int(sum(p[k] for p in per))
        result["detections"]["count"] = int(sum(len(r["scores"]) for r, _ in sets))
    return result
