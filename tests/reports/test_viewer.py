"""`breastssl view` (issue 19): one self-contained viewer.html from a predictions folder in the file contract."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from viewer_fixtures import make_2d, make_comoto, make_dbt

from breastssl.cli import main
from breastssl.reports.viewer import build_viewer


def payload(page: Path) -> dict:
    """The JSON data block the page embeds."""
    text = page.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', text, re.S)
    assert m, "no data block in the page"
    return json.loads(m.group(1))


def decode(uri: str) -> np.ndarray:
    head, b64 = uri.split(",", 1)
    assert head in ("data:image/jpeg;base64", "data:image/png;base64")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_dbt_page_is_self_contained_and_holds_every_view_and_slice(tmp_path: Path) -> None:
    root = make_dbt(tmp_path / "pred", n_slices=6)
    assert main(["view", str(root)]) == 0
    page = root / "viewer.html"
    text = page.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text  # no network reference at all
    assert not re.search(r"<script[^>]*\bsrc=", text) and "<link" not in text and "@import" not in text
    assert "url(" not in text
    data = payload(page)
    (exam,) = data["exams"]
    assert exam["id"] == "E0" and [b[0] for b in exam["breasts"]] == ["R", "L"]
    assert [f"{v['lat']}{v['view']}" for v in exam["views"]] == ["RCC", "LCC", "RMLO", "LMLO"]
    stacks = pd.read_csv(root / "stacks.csv").set_index("image_id")
    for v in exam["views"]:
        assert v["n"] == 6 and len(v["img"]) == 6 and len(v["prob"]) == 6 and len(v["curve"]) == 6
        assert decode(v["img"][3]).shape == (40, 32)  # the model frame (h, w), already under --max-size
        assert v["score"] == pytest.approx(stacks.loc[v["id"], "score"], abs=1e-4)
        assert v["top"] == [int(t) for t in stacks.loc[v["id"], "top_slices"].split(";")]
        (box,) = v["boxes"]
        assert box[4:6] == [2, 4]  # slice_first..slice_last of regions.csv
    assert exam["score"] == pytest.approx(pd.read_csv(root / "exams.csv")["score"].iloc[0], abs=1e-4)


def test_images_are_downsampled_to_max_size(tmp_path: Path) -> None:
    root = make_dbt(tmp_path / "pred", n_slices=3, size=(120, 96))
    out = tmp_path / "v.html"
    assert main(["view", str(root), "-o", str(out), "--max-size", "48"]) == 0
    for v in payload(out)["exams"][0]["views"]:
        assert (v["h"], v["w"]) == (48, 38)
        assert decode(v["img"][0]).shape == (48, 38)
        assert all(decode(u).shape == (48, 38) for u in v["prob"] if u)


def test_an_oversized_page_is_reduced_to_the_budget(tmp_path: Path) -> None:
    root = make_dbt(tmp_path / "pred", n_slices=6, size=(200, 160))
    full = build_viewer(root, tmp_path / "full.html")
    res = build_viewer(root, tmp_path / "small.html", budget_mb=full.n_bytes / 2**20 / 3)
    assert res.within_budget and res.n_bytes < full.n_bytes / 3
    assert res.quality == 70 and res.max_size < 200  # quality first, then resolution
    assert (tmp_path / "small.html").stat().st_size == res.n_bytes


def test_several_exams_give_a_study_list(tmp_path: Path) -> None:
    root = make_dbt(tmp_path / "pred", n_exams=3, n_slices=2)
    assert main(["view", str(root)]) == 0
    text = (root / "viewer.html").read_text(encoding="utf-8")
    assert 'id="study-list"' in text
    exams = payload(root / "viewer.html")["exams"]
    assert [e["id"] for e in exams] == ["E0", "E1", "E2"]
    assert all(len(e["views"]) == 4 for e in exams)
    assert exams[0]["identity"] == {"patient_id": "P0", "accession_number": "A0"}


def test_a_flip_is_undone_on_image_and_boxes(tmp_path: Path) -> None:
    root = make_dbt(tmp_path / "pred", n_slices=2, flip_left=True)
    assert main(["view", str(root)]) == 0
    views = {v["id"]: v for v in payload(root / "viewer.html")["exams"][0]["views"]}
    regions = pd.read_csv(root / "regions.csv").set_index("image_id")
    for iid, flipped in (("E0_RCC", False), ("E0_LCC", True)):
        cols = decode(views[iid]["img"][0]).mean(axis=0)  # the phantom's breast lies against the left edge
        assert (cols[:8].mean() < cols[-8:].mean()) == flipped
        r = regions.loc[iid]
        x = 1 - (r["mx"] + r["mw"]) / 32 if flipped else r["mx"] / 32
        assert views[iid]["boxes"][0][0] == pytest.approx(x, abs=1e-4)
        assert ("mirrored back" in views[iid]["frame"]) == flipped


@pytest.mark.parametrize("modality", ["MG", "US"])
def test_mammography_and_ultrasound_folders(tmp_path: Path, modality: str) -> None:
    root = make_2d(tmp_path / "pred", modality)
    assert main(["view", str(root)]) == 0
    (exam,) = payload(root / "viewer.html")["exams"]
    views = {v["id"]: v for v in exam["views"]}
    assert set(views) == {"img_R", "img_L"} and all(v["n"] == 1 and len(v["img"]) == 1 for v in views.values())
    assert (views["img_L"]["prob"] is not None) == (modality == "MG")  # no prob: no overlay (control)
    assert views["img_L"]["score"] == pytest.approx(0.7) and views["img_R"]["score"] == pytest.approx(0.4)
    assert views["img_L"]["score_source"] == ("predictions.csv image_score" if modality == "MG" else "sources.csv")
    assert exam["score"] == pytest.approx(0.7) and exam["score_source"] == "best breast"


def test_a_detector_stack_without_heatmaps_or_slice_scores(tmp_path: Path) -> None:
    root = make_comoto(tmp_path / "pred", n_slices=6)
    assert main(["view", str(root)]) == 0
    data = payload(root / "viewer.html")
    assert data["family"] == "comoto"
    pred = pd.read_csv(root / "predictions.csv").set_index("image_id")
    for v in data["exams"][0]["views"]:
        assert v["prob"] is None and v["curve"] is None and len(v["img"]) == 6
        assert v["score"] == pytest.approx(pred.loc[v["id"], "Score"], abs=1e-4)
        assert v["score_source"] == "predictions.csv Score"
        assert v["top"] == [3]  # the middle slice of its one volume box (slices 2..4)


# ---- bad input: exit 2, the file named, nothing written --------------------------------------------------------


def _break(root: Path, how: str) -> str:
    """Damage a good DBT folder; returns the file name the error must mention."""
    if how == "no_sources":
        (root / "sources.csv").unlink()
        return "sources.csv"
    if how == "sources_column":
        pd.read_csv(root / "sources.csv").drop(columns="n_slices").to_csv(root / "sources.csv", index=False)
        return "sources.csv"
    if how == "npz_missing":
        (root / "views" / "E0_LMLO.npz").unlink()
        return "E0_LMLO.npz"
    if how == "npz_garbage":
        (root / "views" / "E0_RCC.npz").write_bytes(b"not a zip file")
        return "E0_RCC.npz"
    if how == "npz_slices":
        df = pd.read_csv(root / "sources.csv")
        df.loc[0, "n_slices"] = 5
        df.to_csv(root / "sources.csv", index=False)
        return "E0_RCC.npz"
    if how == "regions_number":
        df = pd.read_csv(root / "regions.csv")
        df["mx"] = df["mx"].astype(object)
        df.loc[1, "mx"] = "left"
        df.to_csv(root / "regions.csv", index=False)
        return "regions.csv: line 3"
    if how == "slices_range":
        df = pd.read_csv(root / "slices.csv")
        df.loc[0, "slice"] = 99
        df.to_csv(root / "slices.csv", index=False)
        return "slices.csv"
    if how == "json":
        (root / "predictions.json").write_text("{not json")
        return "predictions.json"
    raise AssertionError(how)


CASES = ["no_sources", "sources_column", "npz_missing", "npz_garbage", "npz_slices", "regions_number", "slices_range",
         "json"]  # fmt: skip


@pytest.mark.parametrize("how", CASES)
def test_bad_input_exits_2_naming_the_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture, how: str
) -> None:
    root = make_dbt(tmp_path / "pred", n_slices=3)
    name = _break(root, how)
    before = sorted(p.name for p in root.iterdir())
    assert main(["view", str(root)]) == 2
    err = capsys.readouterr().err
    assert name in err, err
    assert sorted(p.name for p in root.iterdir()) == before  # no viewer.html, no temporary file


def test_missing_folder_and_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["view", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
    root = make_dbt(tmp_path / "pred", n_slices=2)
    out = tmp_path / "new" / "folder" / "v.html"
    assert main(["view", str(root), "-o", str(out)]) == 0 and out.is_file()
    out.write_text("old")
    assert main(["view", str(root), "-o", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_text() == "old"
    assert main(["view", str(root), "-o", str(out), "--overwrite"]) == 0 and out.read_text() != "old"
    assert main(["view", str(root), "--max-size", "4"]) == 2
    assert not (root / "viewer.html").exists()
