"""A DBT demo-like predictions folder from the synthetic generator, its viewer.html, and a screenshot of it.

    python scripts/viewer_demo.py OUT [--size 320] [--slices 60] [--screenshot docs/viewer.png]

Writes OUT (a predictions folder in the issue-19 file contract: views/*.npz, sources.csv, regions.csv, slices.csv,
stacks.csv, breasts.csv, exams.csv, predictions.json) for one synthetic 4-view DBT exam with a cancer in the left
breast, then OUT/viewer.html, and with --screenshot a 1400×900 PNG of the page (headless Chromium). No model is
run: the heatmaps are the generator's lesion masks, blurred and faded with distance from the key slice, plus a weak
decoy blob, and the slice scores are their maxima with a little noise — a stand-in with the shape of
``breastssl predict --run`` output, used for docs/viewer.png and for the viewer's size figure (``--size 512``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from breastssl.data.synth.dbt import DBTSynthConfig, generate_exam
from breastssl.reports.headless import run_page
from breastssl.reports.viewer import build_viewer


def _resize(plane: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(plane).resize((size[1], size[0]), Image.Resampling.BILINEAR))


EXAM_CLASSES = ("cancer", "normal", "benign")  # exam i of the demo is of class i % 3


def demo_folder(out: Path, size: int = 320, n_slices: int = 60, n_exams: int = 1, seed: int = 3) -> Path:
    """Write the predictions folder (see the module docstring) into ``out``; returns it."""
    frame = (size, int(size * 0.8))  # the model frame (h, w)
    rng = np.random.default_rng(seed)
    (out / "views").mkdir(parents=True)
    sources, slices, rows, regions = [], [], [], []
    for e in range(n_exams):
        mix = {c: float(c == EXAM_CLASSES[e % 3]) for c in EXAM_CLASSES}
        cfg = DBTSynthConfig(height=size, width=int(size * 0.8), depth_scale=0.5, vendors=["Hologic"],
                             vendor_weights=[1], exam_mix=mix,
                             lesion_radius_px={"malignant": (14.0, 18.0), "benign": (10.0, 14.0)})  # fmt: skip
        _, stacks = generate_exam(cfg, seed, e)
        _exam(out, f"DEMO-{e + 1}", stacks, frame, n_slices, rng, (sources, slices, rows, regions))
    _tables(out, sources, slices, rows, regions)
    info = {"family": "dbt", "modality": "DBT", "model": "synthetic stand-in (no model run)", "image_size": list(frame)}
    (out / "predictions.json").write_text(json.dumps(info, indent=1))
    return out


def _exam(out: Path, exam_id: str, stacks: list, frame: tuple[int, int], n_slices: int, rng: np.random.Generator,
          tables: tuple[list, list, list, list]) -> None:  # fmt: skip
    """Views, heatmaps, regions and scores of one synthetic exam, appended to ``tables``."""
    sources, slices, rows, regions = tables
    size = frame[0]
    for st in stacks:
        iid = f"{exam_id}_{st.laterality}{st.view}"
        pick = np.linspace(0, st.stored.shape[0] - 1, n_slices).round().astype(int)  # resample to n_slices
        centre, width = st.window
        grey = np.clip((st.stored[pick].astype(np.float32) - (centre - width / 2)) / width, 0, 1)
        image = np.stack([_resize((g * 255).astype(np.uint8), frame) for g in grey])
        prob = np.zeros_like(image, dtype=np.float32)
        for les in st.lesions:
            key = int(np.abs(pick - les.key_slice).argmin())
            heat = _resize(
                (ndimage.gaussian_filter(les.mask.astype(np.float32), 0.02 * size) * 255).astype(np.uint8), frame
            )
            heat = heat / max(1.0, heat.max())
            spread = float(np.clip(les.half_depth * n_slices / st.stored.shape[0], 2.0, 5.0))
            peak = 0.95 if les.lesion_class == "malignant" else 0.6  # a benign lesion: a weaker, still visible call
            for k in range(n_slices):
                prob[k] = np.maximum(prob[k], peak * heat * np.exp(-0.5 * ((k - key) / spread) ** 2))
        yy, xx = np.mgrid[0 : frame[0], 0 : frame[1]]  # a weak decoy in every stack, so normals have a curve too
        cy, cx = frame[0] * rng.uniform(0.3, 0.7), frame[1] * rng.uniform(0.3, 0.6)
        decoy = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.04 * size) ** 2))
        dz = rng.integers(10, n_slices - 10)
        for k in range(n_slices):
            prob[k] = np.maximum(prob[k], 0.3 * decoy * np.exp(-0.5 * ((k - dz) / 4) ** 2))
        prob_u8 = np.round(prob * 255).astype(np.uint8)
        geometry = {"source_shape": list(st.stored.shape[1:]), "flip": {"horizontal": False, "vertical": False},
                    "crop": [0, st.stored.shape[1], 0, st.stored.shape[2]], "size": list(frame)}  # fmt: skip
        np.savez_compressed(out / "views" / f"{iid}.npz", image=image, prob=prob_u8,
                            geometry=np.array(json.dumps(geometry)))  # fmt: skip
        curve = np.clip(prob.reshape(n_slices, -1).max(1) + rng.normal(0, 0.02, n_slices), 0, 1).round(4)
        slices += [{"image_id": iid, "slice": k, "score": s} for k, s in enumerate(curve)]
        top = np.argsort(-curve, kind="stable")[:3]
        sy, sx = st.stored.shape[1] / frame[0], st.stored.shape[2] / frame[1]
        for z in top:  # map-derived regions on the top slices (prob ≥ 0.5), as the contract's DBT predictor
            labels, n = ndimage.label(prob[z] >= 0.5, structure=np.ones((3, 3)))
            for r, sl in enumerate(ndimage.find_objects(labels)):
                my, mx, mh, mw = sl[0].start, sl[1].start, sl[0].stop - sl[0].start, sl[1].stop - sl[1].start
                score = round(float(prob[z][sl].max()), 4)
                regions.append({"image_id": iid, "slice": int(z), "region": r, "score": score, "x": mx * sx,
                                "y": my * sy, "w": mw * sx, "h": mh * sy, "mx": mx, "my": my, "mw": mw, "mh": mh,
                                "slice_first": int(z), "slice_last": int(z)})  # fmt: skip
        path = f"demo/{iid}.dcm"
        rows.append({"image_id": iid, "exam_id": exam_id, "laterality": st.laterality, "view": st.view,
                     "vendor": st.vendor, "n_slices": n_slices, "path": path, "score": curve.max(),
                     "aggregation": "max", "top_slices": ";".join(map(str, top))})  # fmt: skip
        sources.append({"image_id": iid, "exam_id": exam_id, "laterality": st.laterality, "view": st.view,
                        "modality": "DBT", "path": path, "n_slices": n_slices})  # fmt: skip


def _tables(out: Path, sources: list, slices: list, rows: list, regions: list) -> None:
    pd.DataFrame(sources).to_csv(out / "sources.csv", index=False)
    pd.DataFrame(regions).to_csv(out / "regions.csv", index=False)
    pd.DataFrame(slices).to_csv(out / "slices.csv", index=False)
    stk = pd.DataFrame(rows)
    stk.to_csv(out / "stacks.csv", index=False)
    br = stk.groupby(["exam_id", "laterality"], as_index=False)["score"].max().assign(aggregation="max")
    br.to_csv(out / "breasts.csv", index=False)
    ex = br.groupby("exam_id", as_index=False)["score"].max().assign(aggregation="max")
    ex.to_csv(out / "exams.csv", index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=320, help="model-frame height (width = 0.8 × height)")
    ap.add_argument("--slices", type=int, default=60)
    ap.add_argument("--exams", type=int, default=1, help="exams (cancer, normal, benign, cancer, ...)")
    ap.add_argument("--max-size", type=int, default=512)
    ap.add_argument("--screenshot", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    demo_folder(args.out, args.size, args.slices, args.exams)
    res = build_viewer(args.out, max_size=args.max_size)
    print(f"{res.path}: {res.n_bytes / 2**20:.2f} MB, {res.n_views} views × {args.slices} slices, images ≤ "
          f"{res.max_size} px, JPEG quality {res.quality}")  # fmt: skip
    if args.screenshot is not None:
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        run = run_page(res.path, screenshot=args.screenshot, window=(1400, 900))
        if not args.screenshot.is_file():
            print(f"no screenshot (chromium exit {run.returncode})", file=sys.stderr)
            return 1
        # docs copy: a 256-colour palette PNG is a third of the size and looks the same
        im = Image.open(args.screenshot).convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
        im.save(args.screenshot, optimize=True)
        print(f"{args.screenshot}: {args.screenshot.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
