"""Reading at the paper's sizes (issue 18): DICOM decode and the preprocessing cache, slices/s per core.

    python benchmarks/bench_decode_scale.py [--slices 16] [--reps 5] [--rate 2000] [--quick] [--json PATH]

Writes, into a temporary folder, one DBT stack of ``--slices`` 896 × 640 frames (Breast Tomosynthesis Image
Storage, 12-bit texture with a lesion) and one 1024 × 832 mammogram, each uncompressed and as JPEG 2000 lossless
(encoded with pylibjpeg-openjpeg, as vendors ship DBT), then times with one thread and process CPU time:

- **decode**: ``breastssl.data.dbt_slices.load_stack`` (the reader every training and predict path uses: pixel
  decode, VOI window, float32 in [0, 1]) for the stack; ``read_image`` for the mammogram;
- **cache read**: the stack through ``breastssl cache --mode dbt`` (float16 and uint8, at 896 × 640), every slice
  read as float32 by ``CacheReader.slice_f32``, as the DBT recipe's ``data.cache`` reads a training slice; the
  mammogram through ``--mode prepare`` at 1024 × 832, read as float32 (warm page cache: the memory-mapped read,
  not the disk).

Reports slices/s per core and the cores each needs to feed a GPU consuming ``--rate`` slices/s. Absolute figures
depend on the machine (printed); the ratios are measured in one run.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import Figure, hardware_line, write_figures

DBT_SIZE, MG_SIZE = (896, 640), (1024, 832)


def texture(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint16 12-bit stored values with smooth structure, noise and a bright blob (compresses like tissue)."""
    rng = np.random.default_rng(seed)
    h, w = shape[-2:]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    base = 1500 + 600 * np.sin(yy / 37.0) * np.cos(xx / 29.0) + 400 * ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < 90**2)
    out = base + rng.normal(0, 60, size=shape).astype(np.float32)
    return np.clip(out, 0, 4095).astype(np.uint16)


def meta(image_id: str) -> dict:
    return {"seed": 0, "image_id": image_id, "exam_id": "bench", "patient_id": "bench", "laterality": "L",
            "view": "CC", "spacing": 0.1, "slice_thickness": 1.0, "window": (2048.0, 4096.0),
            "bits_stored": 12, "vendor": "bench"}  # fmt: skip


def write_files(root: Path, slices: int) -> dict[str, Path]:
    """The four DICOM files (dbt/mg × raw/j2k); the JPEG 2000 ones only where an encoder is installed."""
    import pydicom
    from pydicom.uid import JPEG2000Lossless

    from breastssl.data.synth.dicom_write import write_dbt, write_mg

    files = {"dbt raw": root / "dbt_raw.dcm", "mg raw": root / "mg_raw.dcm"}
    write_dbt(files["dbt raw"], texture((slices, *DBT_SIZE)), meta("dbt"))
    write_mg(files["mg raw"], texture(MG_SIZE, 1), meta("mg"))
    for kind in ("dbt", "mg"):
        ds = pydicom.dcmread(files[f"{kind} raw"])
        try:
            ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
        except Exception as exc:  # no encoder here: the raw files are still measured
            print(f"  ({kind}: no JPEG 2000 encoder: {type(exc).__name__}: {exc})")
            continue
        files[f"{kind} j2k"] = root / f"{kind}_j2k.dcm"
        ds.save_as(files[f"{kind} j2k"], enforce_file_format=True)
    return files


def per_core(fn, n_slices: int, reps: int) -> float:
    """Slices/s of ``fn`` (process CPU time, one thread), the median of ``reps`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(reps):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return n_slices / float(np.median(times))


def cache_rates(root: Path, dbt: Path, mg: Path, slices: int, reps: int) -> dict[str, float]:
    """Slices/s reading back from float16 and uint8 caches as float32: every DBT slice of a ``--mode dbt`` cache
    (as the DBT recipe's data.cache reads a training slice), and the mammogram of a ``--mode prepare`` cache."""
    from breastssl.data.cache import CacheReader, build_cache

    def row(image_id: str, path: Path, modality: str, n: int) -> dict:
        return {"patient_id": "p", "exam_id": "bench", "image_id": image_id, "laterality": "L", "view": "CC",
                "modality": modality, "vendor": "bench", "site": "s", "path": path.name, "n_slices": n,
                "breast_label": "normal", "annotation": "none", "split": "train"}  # fmt: skip

    pd.DataFrame([row("dbt", dbt, "DBT", slices)]).to_csv(root / "dbt.csv", index=False)
    pd.DataFrame([row("mg", mg, "MG", 1)]).to_csv(root / "mg.csv", index=False)
    out = {}
    for dtype in ("float16", "uint8"):
        cache = root / f"cache_dbt_{dtype}"
        build_cache(root / "dbt.csv", cache, DBT_SIZE, workers=1, dtype=dtype, mode="dbt")
        reader = CacheReader(cache)

        def read(reader: CacheReader = reader) -> None:  # as the DBT recipe's data.cache reads a training slice
            for z in range(slices):
                reader.slice_f32("dbt", z)

        out[f"DBT {DBT_SIZE[0]}x{DBT_SIZE[1]}, {dtype}"] = per_core(read, slices, reps)
        cache = root / f"cache_mg_{dtype}"
        build_cache(root / "mg.csv", cache, MG_SIZE, workers=1, dtype=dtype, mode="prepare")
        mg_reader = CacheReader(cache)
        out[f"MG {MG_SIZE[0]}x{MG_SIZE[1]}, {dtype}"] = per_core(lambda r=mg_reader: r.stack_f32("mg"), 1, reps)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=16, help="frames of the DBT stack")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate", type=float, default=2000.0, help="GPU consumption, slices/s, to feed")
    ap.add_argument("--quick", action="store_true", help="4 frames, 2 repetitions (run_all.py --quick)")
    ap.add_argument("--json", default=None, help="write the figures here (run_all.py)")
    args = ap.parse_args()
    if args.quick:
        args.slices, args.reps = 4, 2
    torch.set_num_threads(1)
    from breastssl.data.dbt_slices import load_stack
    from breastssl.data.dicom import read_image

    print(hardware_line())
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        files = write_files(root, args.slices)
        for key, path in files.items():
            mb = path.stat().st_size / 1e6
            if key.startswith("dbt"):
                rate = per_core(lambda p=path: load_stack({"path": p.name}, root), args.slices, args.reps)
                label = f"decode DBT {DBT_SIZE[0]}x{DBT_SIZE[1]}, {key.split()[1]} ({mb:.1f} MB / {args.slices} fr)"
            else:
                rate = per_core(lambda p=path: read_image(p), 1, args.reps)
                label = f"decode MG {MG_SIZE[0]}x{MG_SIZE[1]}, {key.split()[1]} ({mb:.1f} MB)"
            rows.append((label, rate))
        for what, rate in cache_rates(root, files["dbt raw"], files["mg raw"], args.slices, args.reps).items():
            rows.append((f"cache read {what} -> float32", rate))
    print(f"\none thread, process CPU time, median of {args.reps}; cores to feed {args.rate:,.0f} slices/s")
    print(f"{'what':58s} {'slices/s/core':>14s} {'cores':>7s}")
    figures = []
    for label, rate in rows:
        print(f"{label:58s} {rate:14.1f} {math.ceil(args.rate / rate):7d}")
        figures.append(Figure(label, rate, "slices/s/core", note=f"cores for {args.rate:g}/s: {args.rate / rate:.1f}"))
    write_figures(args.json, "bench_decode_scale", figures)


if __name__ == "__main__":
    main()
