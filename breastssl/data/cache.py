"""Preprocessing cache: images/stacks at training resolution in memory-mapped ``.npy`` files.

Layout of a cache folder::

    cache.json                              parameters (size, crop, dtype, version)
    arrays/<key>.npy                        one array per manifest row ((H, W), (D, H, W) or (H, W, 3))
    shards/index-<i>-of-<n>.parquet         what shard i of n built (several machines can share a folder)
    index.parquet                           all shards merged; written once every shard of n is present
    skipped-<i>-of-<n>.csv                  rows skipped with --skip-bad (file, reason)

Each index row records the array's shape, dtype, SHA-256, the preprocessing geometry, and the
source's size, mtime and SHA-256; a re-run rebuilds only rows whose source or parameters changed
(a source touched but not changed is recognised by its hash). ``CacheReader`` returns exactly the
arrays ``load_direct`` computes from the source files (mode ``prepare``); mode ``dbt`` holds ``load_stack``'s
stacks, which the DBT recipe reads slice by slice (``data.cache``) instead of decoding its source files.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, UserError
from ..fsutil import atomic_file
from .preprocess import prepare_row
from .schema import read_table, resolve_path, validate_manifest

CACHE_VERSION = 1


MODES = ("prepare", "dbt")


def params_key(size: tuple[int, int], crop: bool, dtype: str, mode: str = "prepare") -> str:
    """A short hash of everything that changes the cached arrays (``mode`` counted only when not the default, so
    caches built before modes existed keep their key)."""
    params: dict[str, Any] = {"v": CACHE_VERSION, "size": list(size), "crop": crop, "dtype": dtype}
    if mode != "prepare":
        params["mode"] = mode
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/16"`` → (3, 16); shards are numbered 0 … n−1."""
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must look like i/n (e.g. 3/16), not {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise UserError(f"--shard {text}: need 0 ≤ i < n")
    return i, n


def _source_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]


def source_stat(path: Path) -> tuple[int, int]:
    """(total size, latest mtime_ns) of a file or a series folder."""
    files = _source_files(path)
    stats = [f.stat() for f in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def source_hash(path: Path) -> str:
    """SHA-256 over the bytes of a file or of a series folder's files (sorted by name)."""
    h = hashlib.sha256()
    for f in _source_files(path):
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def array_key(image_id: str) -> str:
    """File stem for an image id: readable prefix + hash (ids may hold any characters)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)[:60]
    return f"{safe}-{hashlib.sha256(image_id.encode()).hexdigest()[:8]}"


def load_direct(
    row: dict[str, Any], root: Path, size: tuple[int, int], crop: bool = True, dtype: str = "float16"
) -> np.ndarray:
    """The array the cache holds for ``row``, computed from the source file."""
    arr, _, _ = prepare_row(row, root, size, crop)
    return to_dtype(arr, dtype)


def to_dtype(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Cast [0, 1] floats for storage (uint8 scales to 0…255)."""
    if dtype == "uint8":
        return np.ascontiguousarray(np.rint(np.clip(arr, 0.0, 1.0) * 255.0).astype(np.uint8))
    return np.ascontiguousarray(arr.astype(dtype))


def _arrays(row: dict[str, Any], root: str | Path, size: tuple[int, int], crop: bool, mode: str) -> tuple:
    """(array in [0, 1], geometry dict) of one row in the cache's ``mode``."""
    if mode == "dbt":
        from .dbt_slices import load_stack

        arr = load_stack(row, root, size)
        return arr, {"mode": "dbt", "source_shape": None, "size": list(size)}
    arr, geo, _ = prepare_row(row, root, size, crop)
    return arr, geo.to_dict()


def _build_one(job: tuple) -> dict[str, Any]:
    row, root, out, size, crop, dtype, pkey, mode = job
    src = resolve_path(Path(root), str(row["path"]))
    try:
        if not src.exists():
            raise DataError(f"{src}: file does not exist (manifest row {row['image_id']})")
        size_b, mtime = source_stat(src)
        digest = source_hash(src)
        arr, geo = _arrays(row, root, size, crop, mode)
    except DataError as exc:
        return {"image_id": row["image_id"], "error": str(exc), "file": str(src)}
    arr = to_dtype(arr, dtype)
    name = f"arrays/{array_key(str(row['image_id']))}.npy"
    with atomic_file(Path(out) / name) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    return {
        "image_id": str(row["image_id"]),
        "file": name,
        "shape": json.dumps(list(arr.shape)),
        "dtype": str(arr.dtype),
        "sha256": hashlib.sha256(arr.tobytes()).hexdigest(),
        "source": str(row["path"]),
        "source_size": size_b,
        "source_mtime_ns": mtime,
        "source_sha256": digest,
        "params": pkey,
        "geometry": json.dumps(geo),
    }


def _reusable(entry: dict[str, Any] | None, src: Path, out: Path, pkey: str) -> bool:
    if entry is None or entry.get("params") != pkey or not (out / entry["file"]).is_file() or not src.exists():
        return False
    size_b, mtime = source_stat(src)
    if size_b != entry["source_size"]:
        return False
    if mtime == entry["source_mtime_ns"]:
        return True
    if source_hash(src) == entry["source_sha256"]:
        entry["source_mtime_ns"] = mtime
        return True
    return False


def build_cache(
    manifest: str | Path,
    out: str | Path,
    size: tuple[int, int],
    shard: tuple[int, int] = (0, 1),
    workers: int | None = None,
    crop: bool = True,
    dtype: str = "float16",
    skip_bad: bool = False,
    progress: Callable[[int, int], None] | None = None,
    mode: str = "prepare",
) -> dict[str, Any]:
    """Build (or update) shard ``i`` of ``n`` of a cache for ``manifest``; returns counts.

    Rows are assigned to shards by position in the manifest sorted by image_id (row k → shard k mod n).
    ``mode``: ``prepare`` stores ``preprocess.prepare_row``'s arrays (chest wall left, cropped with ``crop``,
    resized: the mammography and ultrasound inputs); ``dbt`` stores ``dbt_slices.load_stack``'s (the manifest's
    window, resized only: what the DBT recipe trains on), read by the DBT recipe's ``data.cache``.
    """
    manifest, out = Path(manifest), Path(out)
    root = manifest.parent
    df = validate_manifest(read_table(manifest), root, str(manifest), check_files=not skip_bad)
    if dtype not in {"float16", "float32", "uint8"} or len(size) != 2 or min(size) < 1:
        raise UserError(f"cache needs --size H W ≥ 1 and dtype float16/float32/uint8, got {size}, {dtype}")
    if mode not in MODES:
        raise UserError(f"cache mode must be one of {', '.join(MODES)}, got {mode!r}")
    size = (int(size[0]), int(size[1]))
    crop = crop and mode == "prepare"  # a DBT stack is never cropped
    i, n = shard
    pkey = params_key(size, crop, dtype, mode)
    (out / "arrays").mkdir(parents=True, exist_ok=True)
    (out / "shards").mkdir(exist_ok=True)
    _write_params(out, size, crop, dtype, pkey, mode)
    rows = df.sort_values("image_id", kind="stable").reset_index(drop=True)
    rows = [r for k, r in enumerate(rows.to_dict("records")) if k % n == i]
    shard_index = out / "shards" / f"index-{i:05d}-of-{n:05d}.parquet"
    old = {}
    if shard_index.exists():
        old = {str(r["image_id"]): r for r in pd.read_parquet(shard_index).to_dict("records")}
    entries, jobs = [], []
    for r in rows:
        entry = old.get(str(r["image_id"]))
        if _reusable(entry, resolve_path(root, str(r["path"])), out, pkey):
            entries.append(entry)
        else:
            jobs.append((r, str(root), str(out), size, crop, dtype, pkey, mode))
    results = _run(jobs, workers, progress)
    skipped = [(r["file"], r["error"]) for r in results if "error" in r]
    if skipped and not skip_bad:
        raise DataError(skipped[0][1] + (f" (and {len(skipped) - 1} more bad rows)" if len(skipped) > 1 else ""))
    entries += [r for r in results if "error" not in r]
    with atomic_file(shard_index) as tmp:
        pd.DataFrame(entries).to_parquet(tmp, index=False)
    skipped_csv = out / f"skipped-{i:05d}-of-{n:05d}.csv"
    if skipped:
        pd.DataFrame(skipped, columns=["file", "reason"]).to_csv(skipped_csv, index=False)
    merged = finalise(out, n)
    return {
        "built": len(jobs) - len(skipped),
        "reused": len(entries) - (len(jobs) - len(skipped)),
        "skipped": len(skipped),
        "shard": f"{i}/{n}",
        "merged": merged,
    }


def _write_params(out: Path, size: tuple[int, int], crop: bool, dtype: str, pkey: str, mode: str = "prepare") -> None:
    params = {"version": CACHE_VERSION, "size": list(size), "crop": crop, "dtype": dtype, "mode": mode, "params": pkey}
    path = out / "cache.json"
    if path.exists():
        have = json.loads(path.read_text())
        if have.get("params") == pkey:
            return
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(params, indent=2))


def _run(jobs: list[tuple], workers: int | None, progress: Callable[[int, int], None] | None) -> list[dict[str, Any]]:
    workers = workers or os.cpu_count() or 1
    results: list[dict[str, Any]] = []
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(min(workers, len(jobs))) as pool:
            for res in pool.map(_build_one, jobs, chunksize=max(1, len(jobs) // (workers * 8))):
                results.append(res)
                if progress:
                    progress(len(results), len(jobs))
    else:
        for job in jobs:
            results.append(_build_one(job))
            if progress:
                progress(len(results), len(jobs))
    return results


def finalise(out: str | Path, n: int) -> bool:
    """Merge the shard indexes into ``index.parquet`` once all ``n`` are present; True if merged."""
    out = Path(out)
    parts = [out / "shards" / f"index-{k:05d}-of-{n:05d}.parquet" for k in range(n)]
    if not all(p.exists() for p in parts):
        return False
    index = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    index = index.sort_values("image_id", kind="stable").reset_index(drop=True)
    with atomic_file(out / "index.parquet") as tmp:
        index.to_parquet(tmp, index=False)
    return True


def _unit_f32(arr: np.ndarray) -> np.ndarray:
    """A cached array as float32 in [0, 1] (uint8 arrays were stored as round(255·x)), converted through torch
    (several times numpy's float16 conversion); a copy, since the memory map is read-only."""
    import torch

    part = torch.from_numpy(np.array(arr))
    out = part.float()
    return (out.mul_(1.0 / 255.0) if part.dtype == torch.uint8 else out).numpy()


MAX_OPEN_MAPS = 4096  # memory maps a reader keeps open: a paper-scale mammography cache holds 10⁵ arrays


class CacheReader:
    """Read a cache: ``reader[k]`` or ``reader.get(image_id)`` gives the memory-mapped array.

    Uses ``index.parquet``, or (while shards are still being built) every shard index present.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        merged = self.root / "index.parquet"
        if merged.exists():
            self.index = pd.read_parquet(merged)
        else:
            parts = sorted((self.root / "shards").glob("index-*.parquet"))
            if not parts:
                raise DataError(f"{self.root}: not a breastssl cache (no index.parquet or shards/index-*.parquet)")
            self.index = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
        self.params = json.loads((self.root / "cache.json").read_text())
        self._row = {str(v): k for k, v in enumerate(self.index["image_id"])}
        self._files = [self.root / f for f in self.index["file"]]
        self._shapes = [tuple(json.loads(s)) for s in self.index["shape"]]
        self._open: dict[int, np.ndarray] = {}  # memory maps opened so far (cheap: pages load on access)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> np.ndarray:
        return self._load(k)

    def __contains__(self, image_id: object) -> bool:
        return str(image_id) in self._row

    @property
    def mode(self) -> str:
        return str(self.params.get("mode", "prepare"))  # caches built before modes existed: prepare

    def slice_f32(self, image_id: str, z: int) -> np.ndarray:
        """Slice ``z`` of a (D, H, W) array as float32 in [0, 1]; only that slice is read and converted."""
        return _unit_f32(self.get(image_id)[z])

    def stack_f32(self, image_id: str) -> np.ndarray:
        """The whole array of one row as float32 in [0, 1]."""
        return _unit_f32(self.get(image_id))

    def get(self, image_id: str) -> np.ndarray:
        """The array of one manifest row."""
        if image_id not in self._row:
            raise KeyError(f"{image_id} is not in the cache at {self.root}")
        return self._load(self._row[image_id])

    def _load(self, k: int) -> np.ndarray:
        arr = self._open.get(k)
        if arr is not None:
            return arr
        path = self._files[k]
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cached array unreadable ({exc}); rebuild with `breastssl cache`") from None
        if arr.shape != self._shapes[k]:
            raise DataError(f"{path}: cached array has shape {arr.shape}, index says {list(self._shapes[k])}")
        if len(self._open) >= MAX_OPEN_MAPS:  # each map is one kernel mapping (vm.max_map_count, 65,530 by default)
            self._open.pop(next(iter(self._open)))  # the oldest: a dict keeps insertion order
        self._open[k] = arr
        return arr

    def geometry(self, image_id: str) -> dict[str, Any]:
        """The preprocessing geometry the index records for ``image_id`` (``Geometry.to_dict``'s dict)."""
        if image_id not in self._row:
            raise KeyError(f"{image_id} is not in the cache at {self.root}")
        return json.loads(self.index["geometry"].iat[self._row[image_id]])

    def verify(self) -> list[str]:
        """Image ids whose array does not match its checksum (empty when the cache is intact)."""
        bad = []
        for k, (image_id, digest) in enumerate(zip(self.index["image_id"], self.index["sha256"], strict=True)):
            try:
                arr = self._load(k)
            except DataError:
                bad.append(str(image_id))
                continue
            if hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest() != digest:
                bad.append(str(image_id))
        return bad
