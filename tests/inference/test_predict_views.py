"""Issue 19's shared outputs of `breastssl predict --run` (views/, regions.csv, sources.csv, family/modality) for the
four families, and the geometry between the model frame and the source image (``inference/geometry.py``).

What matters: a box or map of the model frame maps back onto the source pixels it came from, whatever flip, crop
and resize preprocessing applied (checked against ``data/preprocess.Geometry`` and torch's resize); every family
writes the contract's files, with regions in source and model pixels that agree, and no patient identifier.
"""

from __future__ import annotations

import json
from pathlib import Path

import clinical_fixtures as cf
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch
import torch.nn.functional as F
from clinical_fixtures import (
    DBT_SIZE,
    DBT_SQUARE,
    IDENTIFICATION,
    MAMMO_SIZE,
    MAMMO_SQUARE,
    square_dbt,
    square_mammo,
)

from breastssl.data.dicom import Image, read_image
from breastssl.data.orientation import Flip
from breastssl.data.preprocess import Geometry, prepare
from breastssl.inference.findings import REGION_COLUMNS, SOURCE_COLUMNS, safe_name
from breastssl.inference.geometry import (
    from_preprocess,
    load_view,
    make_geometry,
    map_to_source,
    model_to_source_boxes,
    model_to_source_points,
    source_to_model_boxes,
)
from breastssl.run.predict import predict_run

CONTRACT_REGION_COLUMNS = ["image_id", "slice", "region", "score", "x", "y", "w", "h", "mx", "my", "mw", "mh",
                           "slice_first", "slice_last"]  # fmt: skip

# the shared fixtures (module-scoped: each test module trains its own tiny runs)
comoto_setup, dbt_setup, mammo_setup, us_setup = cf.comoto_setup, cf.dbt_setup, cf.mammo_setup, cf.us_setup


def square_box(square: tuple[int, int, int, int]) -> np.ndarray:
    y0, y1, x0, x1 = square
    return np.array([x0, y0, x1 - x0, y1 - y0], float)


# ---- geometry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("horizontal,vertical", [(False, False), (True, False), (False, True), (True, True)])
def test_a_box_round_trips_through_flip_crop_and_resize(horizontal, vertical):
    shape, crop, size = (60, 40), (5, 55, 8, 36), (25, 21)
    geo = Geometry(Flip(shape, horizontal, vertical), crop, size)
    g = from_preprocess(geo)
    source = np.zeros(shape, np.float32)
    source[20:30, 12:20] = 1.0  # a bright square
    box = np.array([[12.0, 20.0, 8.0, 10.0]])
    model = geo.boxes(box)
    np.testing.assert_allclose(source_to_model_boxes(box, g), model)  # the dict means what Geometry means
    np.testing.assert_allclose(model_to_source_boxes(model, g), box, atol=1e-9)
    # the square as the model sees it lies in the mapped box, to the pixel
    ys, xs = np.nonzero(geo.mask(source) > 0.5)
    x, y, w, h = model[0]
    assert xs.min() >= np.floor(x) and xs.max() + 1 <= np.ceil(x + w) + 1e-9
    assert ys.min() >= np.floor(y) and ys.max() + 1 <= np.ceil(y + h) + 1e-9
    corners = model_to_source_points(np.array([[x, y], [x + w, y + h]]), g)
    np.testing.assert_allclose(np.sort(corners[:, 0]), [12, 20], atol=1e-9)
    np.testing.assert_allclose(np.sort(corners[:, 1]), [20, 30], atol=1e-9)


@pytest.mark.parametrize("size", [(20, 15), (17, 11)])
def test_map_to_source_is_torch_bilinear_upsampling_undoing_flip_and_crop(size):
    rng = np.random.default_rng(0)
    prob = rng.random((3, *size)).astype(np.float32)
    # resize only: exactly F.interpolate back to the source size
    g = make_geometry((40, 30), size)
    ref = F.interpolate(torch.from_numpy(prob)[None], size=(40, 30), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(map_to_source(prob, g), ref.numpy(), atol=1e-6)
    # flipped and cropped: the crop's pixels get the upsampled map, mirrored; the rest is 0
    g = make_geometry((50, 36), size, crop=(4, 44, 6, 36), horizontal=True, vertical=True)
    up = F.interpolate(torch.from_numpy(prob)[None], size=(40, 30), mode="bilinear", align_corners=False)[0].numpy()
    want = np.zeros((3, 50, 36), np.float32)
    want[:, 4:44, 6:36] = up
    np.testing.assert_allclose(map_to_source(prob, g), want[:, ::-1, ::-1], atol=1e-6)
    mask = prob > 0.5  # masks: nearest neighbour, same dtype
    assert map_to_source(mask, g).dtype == bool and map_to_source(mask, g).shape == (3, 50, 36)


def test_a_lesion_mapped_through_prepare_and_back_lands_where_it_was():
    """prepare() flips a right breast and crops the background; the model-frame lesion maps back onto itself."""
    yy, xx = np.mgrid[:90, :70]
    breast = (((xx - 69) / 45.0) ** 2 + ((yy - 45) / 36.0) ** 2 <= 1).astype(np.float32) * 0.6
    lesion = np.zeros_like(breast, bool)
    lesion[38:50, 44:56] = True
    pixels = np.where(lesion, 1.0, breast).astype(np.float32)
    arr, geo = prepare(Image(pixels, {"modality": "MG"}), (40, 28))
    g = from_preprocess(geo)
    assert g["flip"]["horizontal"] and g["crop"] != [0, 90, 0, 70]
    back = map_to_source(geo.mask(lesion), g)
    # nearest-neighbour there and back: the edges may move by up to one model pixel (≈ 2 source pixels here)
    bounds = [(np.nonzero(m.any(axis=a))[0][[0, -1]]) for m in (back, lesion) for a in (1, 0)]
    np.testing.assert_allclose(np.concatenate(bounds[:2]), np.concatenate(bounds[2:]), atol=2)
    assert (back & lesion).sum() / (back | lesion).sum() > 0.7
    restored = map_to_source(arr, g)
    inside = np.zeros_like(lesion)
    y0, y1, x0, x1 = g["crop"]
    inside[y0:y1, 70 - x1 : 70 - x0] = True  # the crop, in source columns (the flip mirrors it)
    assert np.abs(restored - pixels)[lesion].mean() < 0.15 and not restored[~inside].any()


# ---- the four families ----------------------------------------------------------------------------------


def read_outputs(out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    regions = pd.read_csv(out / "regions.csv", dtype={"image_id": str})
    sources = pd.read_csv(out / "sources.csv", dtype=str, keep_default_na=False)
    assert set(CONTRACT_REGION_COLUMNS) <= set(regions.columns) and list(sources.columns[: len(SOURCE_COLUMNS)]) == (
        SOURCE_COLUMNS
    )
    text = (out / "sources.csv").read_text() + (out / "regions.csv").read_text()
    assert not any(v in text for v in IDENTIFICATION.values())  # no patient or study identifier in plain outputs
    return regions, sources


def check_source_uids(sources: pd.DataFrame) -> None:
    for row in sources.to_dict("records"):
        ds = pydicom.dcmread(row["path"], stop_before_pixels=True)
        assert (row["sop_instance_uid"], row["study_instance_uid"], row["sop_class_uid"]) == (
            ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SOPClassUID)  # fmt: skip
        assert row["patient_name"] == row["accession_number"] == row["study_id"] == ""


def test_dbt_views_regions_and_sources(dbt_setup, tmp_path):
    from breastssl.data.dbt_slices import load_stack

    out = tmp_path / "out"
    predict_run(dbt_setup["run"], [dbt_setup["study"]], out, top_slices=2, model=square_dbt(dbt_setup["run"]))
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["family"] == "dbt" and doc["modality"] == "DBT"
    regions, sources = read_outputs(out)
    check_source_uids(sources)
    stacks = pd.read_csv(out / "stacks.csv", dtype={"image_id": str, "top_slices": str}).set_index("image_id")
    assert len(sources) == 4 and set(sources["modality"]) == {"DBT"} and set(sources["n_slices"]) == {"44"}
    np.testing.assert_allclose(sources["score"].astype(float), stacks.loc[sources["image_id"], "score"])
    for row in sources.to_dict("records"):
        image, prob, g = load_view(out / "views" / f"{safe_name(row['image_id'])}.npz")
        assert image.dtype == prob.dtype == np.uint8 and image.shape == prob.shape == (44, *DBT_SIZE)
        assert g == make_geometry((80, 64), DBT_SIZE)  # DBT: resized only
        np.testing.assert_array_equal(image, np.round(load_stack({"path": row["path"]}, ".", DBT_SIZE) * 255))
        y0, y1, x0, x1 = DBT_SQUARE
        assert (prob[:, y0:y1, x0:x1] == 255).all() and prob.sum() == 255 * 44 * (y1 - y0) * (x1 - x0)
        mine = regions[regions["image_id"] == row["image_id"]]
        # regions only on the stack's top slices, one square each, in model and source pixels
        assert sorted(mine["slice"]) == sorted(int(z) for z in stacks.loc[row["image_id"], "top_slices"].split(";"))
        assert (mine["slice_first"] == mine["slice"]).all() and (mine["slice_last"] == mine["slice"]).all()
        np.testing.assert_allclose(mine[["mx", "my", "mw", "mh"]].to_numpy(), [square_box(DBT_SQUARE)] * 2)
        boxes = mine[["x", "y", "w", "h"]].to_numpy()
        np.testing.assert_allclose(boxes, model_to_source_boxes(mine[["mx", "my", "mw", "mh"]].to_numpy(), g))
        np.testing.assert_allclose(boxes[0], [6 * 64 / 24, 10 * 80 / 32, 6 * 64 / 24, 6 * 80 / 32])
        assert mine["score"].between(0.99, 1.0).all()
        contour = np.array([p.split() for p in mine["contour"].iloc[0].split(";")], float)
        x, y, w, h = boxes[0]
        assert (contour[:, 0] >= x - 1e-6).all() and (contour[:, 0] <= x + w + 1e-6).all()
        assert (contour[:, 1] >= y - 1e-6).all() and (contour[:, 1] <= y + h + 1e-6).all()


def test_dbt_legacy_series_lists_its_slices_in_stack_order(dbt_setup, tmp_path):
    from breastssl.data.dicom import read_image

    out = tmp_path / "out"
    predict_run(dbt_setup["run"], [dbt_setup["legacy"]], out, top_slices=1, model=square_dbt(dbt_setup["run"]))
    _, sources = read_outputs(out)
    assert len(sources) == 1 and sources["n_slices"].iloc[0] == "6"
    row = sources.iloc[0]
    stacked = read_image(Path(row["path"])).meta["files"]  # the reader's slice order
    uids = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in stacked]
    assert row["slice_sop_instance_uids"].split(";") == uids and row["sop_instance_uid"] == uids[0]
    assert Path(row["path"]).is_dir() and row["sop_class_uid"] == "1.2.840.10008.5.1.4.1.1.1.2"


def test_mammo_views_and_regions_follow_flip_and_crop(mammo_setup, tmp_path, monkeypatch):
    square_mammo(monkeypatch)
    out = tmp_path / "out"
    predict_run(mammo_setup["run"], [mammo_setup["study"]], out)
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["family"] == "mammo" and doc["modality"] == "MG" and doc["threshold"] == 0.25
    regions, sources = read_outputs(out)
    check_source_uids(sources)
    assert set(pd.read_csv(out / "predictions.csv")["image"]) == {str(p) for p in mammo_setup["study"].glob("*.dcm")}
    assert sources["exam_id"].nunique() == 1 and list(sources["laterality"]) == ["L", "R"]
    for row in sources.to_dict("records"):
        image, prob, g = load_view(out / "views" / f"{row['image_id']}.npz")
        arr, geo = prepare(read_image(row["path"]), MAMMO_SIZE)
        assert g == from_preprocess(geo) and image.shape == (1, *MAMMO_SIZE)
        np.testing.assert_array_equal(image[0], np.round(np.clip(arr, 0, 1) * 255))
        assert g["flip"]["horizontal"] == (row["laterality"] == "R") and g["crop"][3] - g["crop"][2] < 72
        mine = regions[regions["image_id"] == row["image_id"]]
        assert len(mine) == 1 and mine["slice"].iloc[0] == 0
        np.testing.assert_allclose(mine[["mx", "my", "mw", "mh"]].to_numpy()[0], square_box(MAMMO_SQUARE))
        box = mine[["x", "y", "w", "h"]].to_numpy()
        np.testing.assert_allclose(geo.boxes(box), [square_box(MAMMO_SQUARE)], atol=1e-9)  # preprocess agrees
        x, y, w, h = box[0]
        assert (x + w / 2 > 36) == (row["laterality"] == "R")  # a right breast's lesion is on the image's right
        source_prob = map_to_source(prob[0].astype(np.float32) / 255, g)
        assert source_prob[int(y + h / 2), int(x + w / 2)] >= 0.25


def test_us_regions_are_the_detector_boxes_in_stored_pixels(us_setup, tmp_path):
    from breastssl.data.us_dataset import read_frame

    out = tmp_path / "out"
    predict_run(us_setup["run"], [us_setup["study"]], out)
    doc = json.loads((out / "predictions.json").read_text())
    assert doc["family"] == "us" and doc["modality"] == "US"
    regions, sources = read_outputs(out)
    check_source_uids(sources)
    pred = pd.read_csv(out / "predictions.csv")
    assert len(regions) == len(pred) >= 1
    np.testing.assert_allclose(regions[["x", "y"]].to_numpy(), pred[["x0", "y0"]].to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(regions["w"], pred["x1"] - pred["x0"], rtol=1e-5)
    np.testing.assert_allclose(regions[["mx", "my"]].to_numpy(), regions[["x", "y"]].to_numpy())
    np.testing.assert_allclose(regions["score"], pred["p_malignant"], rtol=1e-6)
    np.testing.assert_allclose(regions["det_score"], pred["det_score"], rtol=1e-6)
    row = sources.iloc[0]
    image, prob, g = load_view(out / "views" / f"{row['image_id']}.npz")
    frame = read_frame(row["path"])
    assert prob is None and g == make_geometry(frame.shape) and row["laterality"] in ("L", "R", "U")
    np.testing.assert_array_equal(image[0], np.round(frame * 255))
    assert float(row["score"]) == pytest.approx(pred["p_malignant"].max())


def test_comoto_regions_are_volume_boxes_with_their_slice_range(comoto_setup, tmp_path):
    manifest = pd.read_csv(comoto_setup["dbt"] / "manifest.csv").iloc[:1]
    one = tmp_path / "one.csv"
    manifest.assign(path=[str(comoto_setup["dbt"] / p) for p in manifest["path"]]).to_csv(one, index=False)
    out = tmp_path / "out"
    predict_run(comoto_setup["run"], [one], out)
    info = json.loads((out / "info.json").read_text())
    assert info["family"] == "comoto" and info["modality"] == "DBT"
    regions, sources = read_outputs(out)
    assert sources["sop_instance_uid"].iloc[0] == "" and sources["modality"].iloc[0] == "DBT"  # .npy: no DICOM
    pred = pd.read_csv(out / "predictions.csv")
    assert len(regions) == len(pred)
    np.testing.assert_allclose(regions[["x", "y", "w", "h"]].to_numpy(), pred[["X", "Y", "Width", "Height"]], atol=1e-4)
    np.testing.assert_array_equal(regions["slice_first"], pred["Z"])
    np.testing.assert_array_equal(regions["slice_last"], pred["Z"] + pred["Depth"] - 1)
    assert (regions["slice"] >= regions["slice_first"]).all() and (regions["slice"] <= regions["slice_last"]).all()
    image, prob, g = load_view(out / "views" / f"{safe_name(sources['image_id'].iloc[0])}.npz")
    rows, cols = np.load(comoto_setup["dbt"] / manifest["path"].iloc[0], mmap_mode="r").shape[-2:]
    assert prob is None and g == make_geometry((rows, cols), (48, 40)) and image.shape[1:] == (48, 40)
    np.testing.assert_allclose(model_to_source_boxes(regions[["mx", "my", "mw", "mh"]].to_numpy(), g),
                               regions[["x", "y", "w", "h"]].to_numpy(), atol=1e-6)  # fmt: skip


def test_region_columns_are_the_contract():
    assert REGION_COLUMNS[: len(CONTRACT_REGION_COLUMNS)] == CONTRACT_REGION_COLUMNS and "contour" in REGION_COLUMNS
