"""Predictions folders in the issue-19 file contract, written directly (a helper module, not a test).

``breastssl predict --run`` writes these files; the viewer tests build them here so that they do not need a
trained model: ``views/<id>.npz`` (image, prob, geometry), ``regions.csv``, ``sources.csv`` and the score tables
(DBT: slices/stacks/breasts/exams.csv; mammography and ultrasound: predictions.csv).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]


def write_view(root: Path, image_id: str, image: np.ndarray, prob: np.ndarray | None = None,
               flip: bool = False) -> None:  # fmt: skip
    """``views/<image_id>.npz`` with the contract's keys (geometry: a resize only, or a horizontal flip)."""
    s, h, w = image.shape
    geometry = {"source_shape": [h * 2, w * 2], "flip": {"horizontal": flip, "vertical": False},
                "crop": [0, h * 2, 0, w * 2], "size": [h, w]}  # fmt: skip
    arrays = {"image": image.astype(np.uint8), "geometry": np.array(json.dumps(geometry))}
    if prob is not None:
        arrays["prob"] = prob.astype(np.uint8)
    (root / "views").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(root / "views" / f"{image_id}.npz", **arrays)


def phantom(n_slices: int, h: int, w: int, lesion: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A breast-like stack (S, h, w) whose every slice differs, and a lesion probability map peaking at
    ``lesion`` = (slice, row, col); both uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    body = ((yy - h / 2) / (0.48 * h)) ** 2 + (xx / (0.9 * w)) ** 2 < 1  # a half ellipse against the left edge
    z0, y0, x0 = lesion
    image = np.zeros((n_slices, h, w), np.uint8)
    prob = np.zeros((n_slices, h, w), np.uint8)
    for k in range(n_slices):
        texture = 90 + 60 * np.sin(xx / 3.0 + k * 0.7) * np.cos(yy / 4.0 - k * 0.4) + rng.normal(0, 12, (h, w))
        blob = np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * (0.08 * h) ** 2)) * np.exp(-((k - z0) ** 2) / 8)
        image[k] = np.clip(body * (texture + 120 * blob), 0, 255)
        prob[k] = np.clip(255 * blob * body, 0, 255)
    return image, prob


def make_dbt(root: Path, n_exams: int = 1, n_slices: int = 8, size: tuple[int, int] = (40, 32), prob: bool = True,
             flip_left: bool = False) -> Path:  # fmt: skip
    """A DBT predictions folder of ``n_exams`` 4-view exams (E0, E1, ...) with slice/stack/breast/exam scores and
    one region per stack on its top slices; returns ``root``."""
    h, w = size
    sources, slices, stacks, regions = [], [], [], []
    for e in range(n_exams):
        for v, (lat, view) in enumerate(VIEWS):
            iid = f"E{e}_{lat}{view}"
            z0, y0, x0 = n_slices // 2, h // 2, w // 3
            image, p = phantom(n_slices, h, w, (z0, y0, x0), seed=10 * e + v)
            write_view(root, iid, image, p if prob else None, flip=flip_left and lat == "L")
            curve = np.round(np.exp(-((np.arange(n_slices) - z0) ** 2) / 8) * (0.3 + 0.15 * v + 0.1 * e), 4)
            slices += [{"image_id": iid, "slice": k, "score": s} for k, s in enumerate(curve)]
            top = np.argsort(-curve, kind="stable")[:3]
            stacks.append({"image_id": iid, "exam_id": f"E{e}", "laterality": lat, "view": view, "vendor": "synth",
                           "n_slices": n_slices, "path": f"/data/{iid}.dcm", "score": curve.max(),
                           "aggregation": "max", "top_slices": ";".join(map(str, top))})  # fmt: skip
            sources.append({"image_id": iid, "exam_id": f"E{e}", "laterality": lat, "view": view, "modality": "DBT",
                            "path": f"/data/{iid}.dcm", "n_slices": n_slices, "patient_id": f"P{e}",
                            "accession_number": f"A{e}"})  # fmt: skip
            side = 0.2 * min(h, w)
            regions.append({"image_id": iid, "slice": z0, "region": 0, "score": curve.max(), "x": 2 * (x0 - side),
                            "y": 2 * (y0 - side), "w": 4 * side, "h": 4 * side, "mx": x0 - side, "my": y0 - side,
                            "mw": 2 * side, "mh": 2 * side, "slice_first": max(0, z0 - 1),
                            "slice_last": min(n_slices - 1, z0 + 1)})  # fmt: skip
    pd.DataFrame(sources).to_csv(root / "sources.csv", index=False)
    pd.DataFrame(regions).to_csv(root / "regions.csv", index=False)
    sl, st = pd.DataFrame(slices), pd.DataFrame(stacks)
    sl.to_csv(root / "slices.csv", index=False)
    st.to_csv(root / "stacks.csv", index=False)
    br = st.groupby(["exam_id", "laterality"], as_index=False)["score"].max().assign(aggregation="max")
    br.to_csv(root / "breasts.csv", index=False)
    br.groupby("exam_id", as_index=False)["score"].max().assign(aggregation="max").to_csv(
        root / "exams.csv", index=False
    )
    (root / "predictions.json").write_text(json.dumps({"family": "dbt", "modality": "DBT", "model": "toy"}))
    return root


def make_2d(root: Path, modality: str = "MG", size: tuple[int, int] = (48, 40)) -> Path:
    """A mammography (``MG``: prob maps, predictions.csv with image/image_score) or ultrasound (``US``: no prob,
    predictions.csv with file/p_malignant, the image score in sources.csv) folder of one exam, two images; returns
    ``root``."""
    h, w = size
    sources, regions, preds = [], [], []
    for v, lat in enumerate("RL"):
        iid = f"img_{lat}"
        image, p = phantom(1, h, w, (0, h // 2, w // 3), seed=v)
        write_view(root, iid, image, p if modality == "MG" else None, flip=lat == "R")
        path = f"/data/{iid}.png"
        sources.append({"image_id": iid, "exam_id": "X1", "laterality": lat, "view": "CC", "modality": modality,
                        "path": path, "n_slices": 1})  # fmt: skip
        score = 0.4 + 0.3 * v
        if modality == "US":  # the image score beside the source, as the ultrasound predictor writes it
            sources[-1]["score"] = score
        box = {"x": 10.0, "y": 12.0, "w": 8.0, "h": 6.0, "mx": 5.0, "my": 6.0, "mw": 4.0, "mh": 3.0}
        regions.append({"image_id": iid, "slice": 0, "region": 0, "score": score, **box, "slice_first": 0,
                        "slice_last": 0})  # fmt: skip
        if modality == "MG":
            preds.append({"image": path, "image_score": score, "mask_pixels": 10, "x": 5, "y": 6, "w": 4, "h": 3,
                          "score": score})  # fmt: skip
        else:
            preds.append({"file": path, "x0": 5, "y0": 6, "x1": 9, "y1": 9, "det_score": 0.9, "p_malignant": score})
    pd.DataFrame(sources).to_csv(root / "sources.csv", index=False)
    pd.DataFrame(regions).to_csv(root / "regions.csv", index=False)
    pd.DataFrame(preds).to_csv(root / "predictions.csv", index=False)
    family = {"MG": "mammo", "US": "us"}[modality]
    (root / "predictions.json").write_text(json.dumps({"family": family, "modality": modality}))
    return root


def make_comoto(root: Path, n_slices: int = 6) -> Path:
    """A CoMoTo-like DBT folder: a detector's volume boxes, no heatmaps, no slice scores; predictions.csv holds
    the BCS-DBT columns (image_id first, ``Score``) and info.json the run; returns ``root``."""
    make_dbt(root, n_slices=n_slices, prob=False)
    for name in ("slices.csv", "stacks.csv", "breasts.csv", "exams.csv", "predictions.json"):
        (root / name).unlink()
    regions = pd.read_csv(root / "regions.csv")
    pred = pd.DataFrame({"image_id": regions["image_id"], "PatientID": "P0", "StudyUID": "E0", "View": "lcc",
                         "X": regions["x"], "Y": regions["y"], "Width": regions["w"], "Height": regions["h"],
                         "Z": regions["slice_first"], "Depth": regions["slice_last"] - regions["slice_first"] + 1,
                         "Score": regions["score"]})  # fmt: skip
    pred.to_csv(root / "predictions.csv", index=False)
    (root / "info.json").write_text(json.dumps({"family": "comoto", "modality": "DBT", "volumes": 4}))
    return root
