"""Run an exported model with onnxruntime, as a drop-in for the torch module in the predictors.

:class:`OnnxModel` is called like the torch model (``model(x)``, ``model(x, aux)``, a detector on a batch or a list
of images) and returns the same structure of torch tensors (dicts, feature lists, per-image detections), read
from the template :mod:`breastssl.export.onnx_export` stored in the file. ``eval``, ``train``, ``to`` and
``requires_grad_`` are no-ops, and ``parameters()`` yields one empty CPU tensor, so code that asks a model for
its device or toggles its mode works unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError
from .onnx_export import META_KEY, ExportSpec, unflatten_outputs

DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxModel:
    """An exported breastssl model (``model.onnx``) behind the torch model's call signature; see the module doc.

    providers: onnxruntime execution providers; None = CUDA when this onnxruntime has it, else CPU.
    """

    training = False

    def __init__(self, path: str | Path, providers: Sequence[str] | None = None, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise UserError(f"ONNX model {self.path} does not exist")
        if providers is None:
            available = set(ort.get_available_providers())
            providers = [p for p in DEFAULT_PROVIDERS if p in available]
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=list(providers))
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types for unreadable files)
            raise UserError(f"ONNX model {self.path} cannot be loaded ({type(exc).__name__}: {exc})") from None
        meta = self.session.get_modelmeta().custom_metadata_map.get(META_KEY)
        if meta is None:
            raise UserError(f"ONNX model {self.path} was not written by breastssl export (no '{META_KEY}' metadata)")
        self.meta: dict[str, Any] = json.loads(meta)
        self.kind: str = self.meta["kind"]
        self.spec = ExportSpec(**self.meta["spec"])
        self.template = self.meta["template"]
        self._inputs = {i.name: i.shape for i in self.session.get_inputs()}

    # torch.nn.Module look-alikes: the predictors call these on their model
    def eval(self) -> OnnxModel:
        return self

    def train(self, mode: bool = True) -> OnnxModel:
        return self

    def to(self, *args: Any, **kwargs: Any) -> OnnxModel:
        return self

    def requires_grad_(self, requires_grad: bool = True) -> OnnxModel:
        return self

    def parameters(self) -> Iterator[Tensor]:
        yield torch.zeros(0)  # results come back on the CPU (or the input's device)

    def __repr__(self) -> str:
        return f"OnnxModel({str(self.path)!r}, kind={self.kind!r}, providers={self.session.get_providers()})"

    def __call__(self, images: Tensor | Sequence[Tensor], aux: Tensor | None = None, targets: Any = None) -> Any:
        """Run the model. images: (B, C, H, W), or for detectors also a list of (C, H, W); aux: (B, C, H, W).

        Returns the torch model's output structure, tensors on the device of ``images``.
        """
        if targets is not None:
            raise ValueError("an exported ONNX model is for inference only: it takes no targets")
        if self.spec.per_image:
            return self._per_image(images)
        if not isinstance(images, Tensor):
            raise TypeError(f"{self.kind}: expected a (B, C, H, W) tensor, got {type(images).__name__}")
        feeds = [images]
        if "aux" in self.spec.input_names:
            feeds.append(images if aux is None else aux)  # the model's single-view mode: the image is its own partner
        elif aux is not None:
            raise ValueError(f"{self.kind} takes one input image, got an aux image too")
        return self._run(feeds, images.device)

    def _run(self, feeds: list[Tensor], device: torch.device) -> Any:
        arrays = {}
        for name, x in zip(self.spec.input_names, feeds, strict=True):
            arr = x.detach().to("cpu", torch.float32).numpy()
            self._check(name, arr.shape)
            arrays[name] = np.ascontiguousarray(arr)
        values = self.session.run(self.meta["outputs"], arrays)
        tensors = {
            n: torch.from_numpy(np.asarray(v)).to(device) for n, v in zip(self.meta["outputs"], values, strict=True)
        }
        return unflatten_outputs(self.template, tensors)

    def _check(self, name: str, shape: tuple[int, ...]) -> None:
        want = self._inputs[name]
        ok = len(shape) == len(want) and all(not isinstance(w, int) or w == s for w, s in zip(want, shape, strict=True))
        if not ok:
            dims = ", ".join(str(w) if isinstance(w, int) else str(w or "?") for w in want)
            raise ValueError(f"{self.path.name}: input {name!r} must have shape ({dims}), got {tuple(shape)}")

    def _per_image(self, images: Tensor | Sequence[Tensor]) -> Any:
        """Detectors were traced on one image: run each image alone and merge as the torch model batches."""
        items = [
            im[None] if im.dim() == 3 else im for im in (images.split(1) if isinstance(images, Tensor) else images)
        ]
        if not items:
            raise ValueError(f"{self.kind}: no images")
        outs = [self._run([im], im.device) for im in items]
        return _merge(outs, set(self.spec.image_lists))


def _merge(outs: list[Any], image_lists: set[str] | None = None) -> Any:
    """Merge per-image outputs: tensors concatenated on the batch axis, per-image lists concatenated, constants kept."""
    first = outs[0]
    if isinstance(first, Tensor):
        return torch.cat(outs) if first.dim() else torch.stack(outs)
    if isinstance(first, dict):
        lists = image_lists or set()
        return {k: [x for o in outs for x in o[k]] if k in lists else _merge([o[k] for o in outs]) for k in first}
    if isinstance(first, list):
        return [_merge([o[i] for o in outs]) for i in range(len(first))]
    return first
