"""`breastssl export --run RUN`: a tiny DBT train run, a self-training run, a CoMoTo run, an ultrasound bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from breastssl.cli import app, main
from breastssl.engine import checkpoint_path, save_checkpoint
from breastssl.errors import UserError
from breastssl.export import OnnxModel

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def dbt_run(tmp_path_factory) -> Path:
    """A 2-step `breastssl train` run of the demo recipe at 32×24 on 4 synthetic exams."""
    from breastssl.commands.synth import run_synth
    from breastssl.config import load_config
    from breastssl.run.recipes.dbt import RunConfig
    from breastssl.run.train import run_train

    base = tmp_path_factory.mktemp("dbt")
    run_synth("dbt", base / "data", n=4, seed=0, fmt="npy")
    overrides = [
        f"data.manifest={base / 'data' / 'manifest.csv'}",
        "data.image_size=[32,24]",
        "train.steps=2",
        "train.batch_size=8",
        "train.ckpt_every=2",
        "train.log_every=1",
        "train.tensorboard=false",
        "train.progress=false",
        f"train.out_dir={base / 'run'}",
        "data.test_split=train",
    ]  # fmt: skip  (4 exams leave the test split empty)
    cfg = load_config(RunConfig, ROOT / "configs" / "dbt_selectivekd_demo.yaml", overrides)
    run_train(cfg)
    return base / "run"


def test_export_dbt_run_matches_torch(dbt_run, tmp_path):
    from breastssl.run.recipes.dbt import load_teacher

    out = tmp_path / "onnx"
    result = runner.invoke(app, ["export", "--run", str(dbt_run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "max abs diff" in result.output
    meta = json.loads((out / "export.json").read_text())
    (entry,) = meta["models"]
    assert meta["run_type"] == "dbt" and meta["opset"] >= 17 and entry["kind"] == "tiny_cnn"
    assert entry["input_shape"][1:] == [1, 32, 24] and entry["parity"]["max_abs_diff"] < 1e-4
    assert {"torch", "onnx", "onnxruntime"} <= set(meta["versions"])
    model, onnx_model = load_teacher(dbt_run), OnnxModel(out / "model.onnx")
    x = torch.rand(5, 1, 32, 24, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
    got = onnx_model(x)
    for key in ("logits", "mask_logits"):
        assert (ref[key] - got[key]).abs().max() < 1e-4, key
    # a second export to the same folder needs --overwrite; a checkpoint file works as RUN too
    assert runner.invoke(app, ["export", "--run", str(dbt_run), "--out", str(out)]).exit_code != 0
    ckpt = sorted((dbt_run / "checkpoints").glob("step_*.pt"))[-1]
    again = runner.invoke(app, ["export", "--run", str(ckpt), "--out", str(out), "--overwrite", "--opset", "18"])
    assert again.exit_code == 0, again.output
    assert json.loads((out / "export.json").read_text())["opset"] == 18


def test_bad_input_fails_and_leaves_nothing(dbt_run, tmp_path):
    out = tmp_path / "onnx"
    bad = runner.invoke(app, ["export", "--run", str(dbt_run), "--format", "tflite", "--out", str(out)])
    assert bad.exit_code != 0 and isinstance(bad.exception, UserError) and "tflite" in str(bad.exception)
    assert main(["export", "--run", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert main(["export", "--run", str(dbt_run), "--opset", "11", "--out", str(out)]) == 2
    assert main(["export", "--run", str(dbt_run), "--opset", "99", "--out", str(out)]) == 2
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["export", "--run", str(tmp_path / "junk.pt"), "--out", str(out)]) == 2
    assert main(["export", "--run", str(tmp_path), "--out", str(out)]) == 2  # a folder that is no run
    assert not out.exists() and not list(tmp_path.glob(".onnx*"))


def test_failed_parity_leaves_nothing(dbt_run, tmp_path, monkeypatch):
    import breastssl.export

    monkeypatch.setattr(breastssl.export, "parity", lambda *a: {"max_abs_diff": 0.5, "max_rel_diff": 0.5})
    out = tmp_path / "onnx"
    assert main(["export", "--run", str(dbt_run), "--out", str(out)]) == 2
    assert not out.exists() and not list(tmp_path.glob(".onnx*"))


def _export(run: Path, out: Path) -> dict:
    result = runner.invoke(app, ["export", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "export.json").read_text())


def test_export_self_training_run(tmp_path):
    """A mammography self-training run dir: model.json + checkpoints; two inputs (image, contralateral aux)."""
    from breastssl.models import create_model

    kwargs = {"backbone": "tiny", "width": 4, "decoder_width": 16}
    torch.manual_seed(0)
    model = create_model("bilateral_two_view", **kwargs).eval()
    run = tmp_path / "run"
    save_checkpoint({"step": 1, "model": model.state_dict()}, checkpoint_path(run, 1))
    (run / "model.json").write_text(json.dumps({"name": "bilateral_two_view", "kwargs": kwargs, "size": [40, 32]}))
    meta = _export(run, tmp_path / "onnx")
    assert meta["run_type"] == "mammo_self_training" and meta["models"][0]["inputs"] == ["image", "aux"]
    x, aux = torch.rand(2, 1, 40, 32), torch.rand(2, 1, 40, 32)
    with torch.no_grad():
        ref = model(x, aux)["mask_logits"]
    assert (OnnxModel(tmp_path / "onnx" / "model.onnx")(x, aux)["mask_logits"] - ref).abs().max() < 1e-4


def test_export_comoto_run(tmp_path):
    """A CoMoTo student run dir (config.json two levels up): RetinaNet with NMS inside the graph."""
    from breastssl.experiments.comoto import ComotoExperimentConfig, _model

    cfg = ComotoExperimentConfig(size=(48, 40), width=4, out_dir=str(tmp_path / "comoto"))
    (tmp_path / "comoto").mkdir()
    (tmp_path / "comoto" / "config.json").write_text(json.dumps(cfg.model_dump(mode="json")))
    torch.manual_seed(0)
    model = _model(cfg).eval()
    run = tmp_path / "comoto" / "seed0" / "frac1" / "lskd"
    save_checkpoint({"step": 1, "model": model.state_dict()}, checkpoint_path(run, 1))
    meta = _export(run, tmp_path / "onnx")
    (entry,) = meta["models"]
    assert (
        meta["run_type"] == "comoto" and entry["export_kind"] == "detector" and entry["input_shape"] == [1, 1, 48, 40]
    )
    assert entry["parity"]["max_abs_diff"] < 1e-4 and entry["parity"]["detections"]["unmatched"] == 0
    got = OnnxModel(tmp_path / "onnx" / "model.onnx")(torch.rand(3, 1, 48, 40))
    assert len(got["detections"]) == 3 and got["cls_logits"].shape[0] == 3 and got["stride"] == model.stride


def test_export_us_bundle(tmp_path):
    """An ultrasound bundle: detector.onnx (dynamic frame size) + recognition.onnx."""
    from breastssl.experiments._us_mean_teacher_impl import USExperimentConfig, save_bundle
    from breastssl.models import create_model
    from breastssl.models.detection import create_detector

    cfg = USExperimentConfig.model_validate({"detector": {"min_size": 64, "max_size": 96},
                                             "recognition": {"width": 4, "crop_size": 16}})  # fmt: skip
    torch.manual_seed(0)
    det = create_detector("tiny", min_size=64, max_size=96).eval()
    recog = create_model("recognition_cnn", width=4, dropout=0.5, num_classes=1).eval()
    save_bundle(tmp_path / "us_model.pt", det, recog, cfg)
    meta = _export(tmp_path / "us_model.pt", tmp_path / "onnx")
    assert meta["run_type"] == "us_bundle" and [m["file"] for m in meta["models"]] == [
        "detector.onnx",
        "recognition.onnx",
    ]
    assert meta["models"][0]["dynamic_axes"] == ["height", "width"]
    frame = [torch.rand(1, 72, 88)]
    with torch.no_grad():
        ref = det(frame)
    got = OnnxModel(tmp_path / "onnx" / "detector.onnx")(frame)
    assert (got["scores"][0] - ref["scores"][0]).abs().max() < 1e-5
    assert (got["boxes"][0] - ref["boxes"][0]).abs().max() < 1e-3


def test_predict_with_onnx_matches_torch(dbt_run, tmp_path):
    """`predict --run RUN --onnx model.onnx` scores every slice like the torch checkpoint it was exported from."""
    import pandas as pd

    onnx_dir = tmp_path / "onnx"
    assert runner.invoke(app, ["export", "--run", str(dbt_run), "--out", str(onnx_dir)]).exit_code == 0
    manifest = dbt_run.parent / "data" / "manifest.csv"
    ref, got = tmp_path / "torch", tmp_path / "ort"
    assert main(["predict", "--run", str(dbt_run), str(manifest), "--out", str(ref)]) == 0
    assert main(["predict", "--run", str(dbt_run), str(manifest), "--out", str(got),
                 "--onnx", str(onnx_dir / "model.onnx")]) == 0  # fmt: skip
    a, b = pd.read_csv(ref / "slices.csv"), pd.read_csv(got / "slices.csv")
    assert len(a) == len(b) > 0 and (a["image_id"] == b["image_id"]).all()
    assert (a["score"] - b["score"]).abs().max() < 1e-5
    assert len(list((got / "heatmaps").glob("*.png"))) == len(list((ref / "heatmaps").glob("*.png"))) > 0
    assert main(["predict", "--run", str(dbt_run), str(manifest), "--out", str(tmp_path / "x"),
                 "--onnx", str(tmp_path / "missing.onnx")]) == 2  # fmt: skip
    assert not (tmp_path / "x").exists()
