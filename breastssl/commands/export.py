"""`breastssl export --run RUN --format onnx`: a trained model → ONNX, checked against onnxruntime.

RUN is a run dir (DBT `breastssl train`, mammography self-training, CoMoTo) or a model bundle / checkpoint file
(see :mod:`breastssl.export.runs`). The output folder gets ``model.onnx`` (an ultrasound bundle:
``detector.onnx`` + ``recognition.onnx``) and ``export.json``: model kind, input shape, opset, exporter, the
parity figures on a random input and the torch / onnx / onnxruntime versions. The folder is written under a
temporary name and renamed, so a failed export (including a failed parity check) leaves nothing behind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from .common import OverwriteOpt, console

FORMATS = ("onnx",)
PARITY_SEED = 1234  # the parity input differs from the traced example input (seed 0)


def default_out(run: Path) -> Path:
    """``<run dir>/onnx``; for a file (bundle or checkpoint): ``<folder>/<stem>_onnx``."""
    return run / "onnx" if run.is_dir() else run.parent / f"{run.stem}_onnx"


def run_export(
    run: Path, out: Path | None = None, fmt: str = "onnx", opset: int | None = None, tolerance: float = 1e-4,
    overwrite: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Export every model of ``run`` into ``out``; returns (and writes) ``export.json``'s dict.

    Each file is run with onnxruntime on a random input and compared with the torch model (dense outputs: max abs
    difference, relative to max(1, |output|); detections: matched as sets, box differences relative to the image
    size). A difference above ``tolerance`` (or unmatched detections) is a :class:`UserError` and nothing is written.
    """
    import torch

    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise UserError(f"ONNX export needs the export extra: pip install 'breastssl[export]' ({exc})") from None

    from ..export import OPSET, OnnxModel, export_model, load_run, max_opset, model_spec, parity
    from ..fsutil import atomic_dir

    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not supported; choose one of: {', '.join(FORMATS)}")
    opset = OPSET if opset is None else opset
    if not OPSET <= opset <= max_opset():
        raise UserError(f"--opset {opset} is not supported: choose {OPSET} to {max_opset()}")
    run_type, items = load_run(run)
    out = out or default_out(run)
    summary: dict[str, Any] = {
        "run": str(run), "run_type": run_type, "format": fmt, "opset": opset, "models": [],
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }  # fmt: skip
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for item in items:
            info = export_model(item.model, tmp / f"{item.name}.onnx", item.input_shape, name=item.kind, opset=opset)
            spec = model_spec(item.model)
            # parity on two images (detectors are run per image by OnnxModel) drawn independently of the trace input
            gen = torch.Generator().manual_seed(PARITY_SEED)
            inputs = [torch.rand((2, *item.input_shape[1:]), generator=gen) for _ in spec.input_names]
            res = parity(item.model, OnnxModel(tmp / f"{item.name}.onnx", providers=["CPUExecutionProvider"]), inputs)
            # boxes are in input pixels: their difference is scaled by the image size like the dense outputs
            box = res.get("detections", {}).get("max_box_diff", 0.0) / max(item.input_shape[-2:])
            worst = max(res["max_rel_diff"], box)
            unmatched = res.get("detections", {}).get("unmatched", 0)
            if not math.isfinite(worst) or worst > tolerance or unmatched:
                raise UserError(
                    f"{item.name}: ONNX output differs from torch (relative difference {worst:.3g}, unmatched "
                    f"detections {unmatched}; tolerance {tolerance:g}): nothing was written"
                )
            entry = {
                "file": f"{item.name}.onnx", "kind": item.kind, "export_kind": info.spec["kind"],
                "inputs": info.spec["input_names"], "input_shape": info.input_shape,
                "dynamic_axes": ["batch"] * (not spec.per_image) + ["height", "width"] * spec.dynamic_hw,
                "exporter": info.exporter, "checkpoint": item.source, "parity": res,
            }  # fmt: skip
            summary["models"].append(entry)
            console.print(
                f"{item.name}.onnx ({item.kind}, input {tuple(info.input_shape)}): max abs diff vs torch "
                f"{res['max_abs_diff']:.3g} (relative {res['max_rel_diff']:.3g})"
                + (f", detections {res['detections']}" if "detections" in res else "")
            )
            if res.get("detections", {}).get("tied"):
                console.print(
                    f"note: {res['detections']['tied']} detections share their score with another (an untrained "
                    "head?): which of them survive NMS is arbitrary, so their boxes were not compared"
                )
        (tmp / "export.json").write_text(json.dumps(summary, indent=2))
    return summary


def register(app: typer.Typer) -> None:
    @app.command()
    def export(
        run: Path = typer.Option(..., "--run", "-r", help="run dir, checkpoint file, or model bundle (us_model.pt)"),
        fmt: str = typer.Option("onnx", "--format", "-f", help="export format (onnx)"),
        out: Path | None = typer.Option(None, "--out", "-o", help="output folder; default <run>/onnx"),
        opset: int | None = typer.Option(None, "--opset", help="ONNX opset: 17 (default) to 20"),
        tolerance: float = typer.Option(
            1e-4, "--tolerance", help="largest allowed |torch - onnxruntime| / max(1, |torch|) per output"
        ),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Export a trained model to ONNX (model.onnx + export.json) and check it against onnxruntime.

        Works for every model kind: classifier-segmenters, the bilateral two-view net (inputs image + aux),
        RetinaNet (CoMoTo) and the ultrasound Faster R-CNN + recognition bundle, detectors with their
        post-processing (NMS) inside the graph. Load the result with breastssl.export.OnnxModel.
        """
        summary = run_export(run, out, fmt, opset, tolerance, overwrite)
        console.print(f"[bold]{summary['run_type']}[/] → {out or default_out(run)}")
