"""ONNX export parity: every registered model and the Faster R-CNN detector, torch vs onnxruntime."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from breastssl.export import OnnxModel, export_model, export_onnx, match_detections, model_spec, parity
from breastssl.models import create_model, list_models, model_entry
from breastssl.models.detection import create_detector

SHAPE = (2, 1, 64, 48)  # traced batch 2; parity runs on batch 3, so the batch axis must really be dynamic
DENSE_TOL = 1e-4
BOX_TOL = 1e-3  # pixels: boxes are decoded from float32 regressions, up to ~64 px here
SCORE_TOL = 1e-5


def tiny(name: str) -> torch.nn.Module:
    """The registry's tiny configuration; detectors keep every box and get a head with spread-out scores."""
    torch.manual_seed(0)
    kw = dict(model_entry(name).tiny)
    model = create_model(name, **kw)
    if model_spec(model).image_lists:
        model = create_model(name, **kw, score_thresh=0.0, detections_per_img=10)
        # an untrained head gives every anchor the prior score: ties make the kept boxes arbitrary (in torch too)
        with torch.no_grad():
            for p in model.det.head.classification_head.parameters():
                p.normal_(0.0, 0.2)
    return model.eval()


def same_structure(a, b, where: str = "output") -> None:
    """Same nesting, keys, list lengths, tensor shapes and dtypes; the same constants."""
    assert type(a) is type(b) or (isinstance(a, list | tuple) and isinstance(b, list | tuple)), where
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{where}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            same_structure(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            same_structure(x, y, f"{where}.{i}")
    else:
        assert a == b, where


def check_detections(res: dict) -> None:
    det = res["detections"]
    assert det["count"] > 0 and det["unmatched"] == 0 and det["tied"] == 0, det
    assert det["max_box_diff"] < BOX_TOL and det["max_score_diff"] < SCORE_TOL, det


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_matches_onnxruntime(name, tmp_path):
    model = tiny(name)
    model.train()  # export must trace eval mode and give the model back in the mode it had
    info = export_model(model, tmp_path / f"{name}.onnx", SHAPE, name=name)
    assert model.training
    model.eval()
    onnx_model = OnnxModel(tmp_path / f"{name}.onnx", providers=["CPUExecutionProvider"])
    assert onnx_model.kind == name and info.opset >= 17
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.rand(3, *SHAPE[1:], generator=gen) for _ in info.spec["input_names"]]
    res = parity(model, onnx_model, inputs)
    assert res["max_abs_diff"] < DENSE_TOL, res
    if "detections" in res:
        check_detections(res)
    with torch.no_grad():
        same_structure(model(*inputs), onnx_model(*inputs))
    out = onnx_model(*inputs)
    assert isinstance(out, dict) and "logits" in out and out["logits"].shape[0] == 3


def test_two_view_without_aux_is_its_own_partner(tmp_path):
    model = tiny("bilateral_two_view")
    export_model(model, tmp_path / "m.onnx", SHAPE)
    x = torch.rand(2, *SHAPE[1:])
    got = OnnxModel(tmp_path / "m.onnx")(x)
    with torch.no_grad():
        ref = model(x)
    assert (got["mask_logits"] - ref["mask_logits"]).abs().max() < DENSE_TOL


def test_faster_rcnn_matches_onnxruntime_at_any_image_size(tmp_path):
    torch.manual_seed(0)
    det = create_detector("tiny", min_size=64, max_size=96).eval()
    info = export_model(det, tmp_path / "det.onnx", (1, 1, 64, 64), name="faster_rcnn")
    assert info.spec["kind"] == "faster_rcnn" and info.spec["dynamic_hw"]
    onnx_det = OnnxModel(tmp_path / "det.onnx")
    for size in [(64, 64), (70, 90), (120, 80)]:  # the exported graph resizes inside, like torchvision's transform
        res = parity(det, onnx_det, [torch.rand(2, 1, *size, generator=torch.Generator().manual_seed(size[0]))])
        check_detections(res)
    frames = [torch.rand(1, 50, 60), torch.rand(1, 64, 64)]  # the predictor's call: a list of (1, H, W)
    with torch.no_grad():
        ref = det(frames)
    got = onnx_det(frames)
    same_structure(ref, got)
    assert len(got["boxes"]) == 2


def test_export_onnx_names_outputs_and_keeps_dict_keys(tmp_path):
    model = tiny("tiny_cnn")
    path = export_onnx(model, [torch.rand(*SHAPE)], tmp_path / "m.onnx", output_names=None)
    names = [o.name for o in ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_outputs()]
    assert names[:2] == ["logits", "features.0"] and "mask_logits" in names
    renamed = export_onnx(model, [torch.rand(*SHAPE)], tmp_path / "r.onnx", output_names=["a", "b", "c", "d", "e"])
    sess = ort.InferenceSession(str(renamed), providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="output_names"):
        export_onnx(model, [torch.rand(*SHAPE)], tmp_path / "bad.onnx", output_names=["only"])
    assert not (tmp_path / "bad.onnx").exists()
    with pytest.raises(ValueError, match="opset 11"):
        export_onnx(model, [torch.rand(*SHAPE)], tmp_path / "old.onnx", opset=11)


def test_onnx_model_is_a_drop_in_for_predictors(tmp_path):
    from breastssl.run.early_stopping import predict_proba

    model = tiny("recognition_cnn")
    export_model(model, tmp_path / "m.onnx", (2, 1, 16, 16))
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    assert onnx_model.eval() is onnx_model and onnx_model.to("cpu") is onnx_model and not onnx_model.training
    x = torch.rand(5, 1, 16, 16)
    assert abs(predict_proba(onnx_model, x) - predict_proba(model, x)).max() < 1e-5
    with pytest.raises(ValueError, match="shape"):
        onnx_model(torch.rand(2, 1, 20, 16))  # H and W are fixed for the dense kinds
    with pytest.raises(ValueError, match="targets"):
        onnx_model(x, targets=[{}])


def test_match_detections_finds_a_moved_box_and_a_missing_one():
    ref = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20]]), "scores": torch.tensor([0.9, 0.5]),
           "labels": torch.tensor([0, 0])}  # fmt: skip
    same = {k: v.flip(0) for k, v in ref.items()}  # another order: the same set
    assert match_detections(ref, same) == {"max_box_diff": 0.0, "max_score_diff": 0.0, "unmatched": 0, "tied": 0}
    moved = {**ref, "boxes": ref["boxes"] + torch.tensor([[0.0, 0, 0, 0], [0, 0, 3, 0]])}
    assert match_detections(ref, moved)["max_box_diff"] == pytest.approx(3.0)
    fewer = {k: v[:1] for k, v in ref.items()}
    assert match_detections(ref, fewer)["unmatched"] == 1


def test_onnx_model_rejects_foreign_files(tmp_path):
    from breastssl.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        OnnxModel(tmp_path / "none.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(UserError, match="cannot be loaded"):
        OnnxModel(tmp_path / "junk.onnx")
