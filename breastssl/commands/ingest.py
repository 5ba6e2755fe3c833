"""`breastssl ingest`: build a manifest (and lesions table) from a dataset layout or a DICOM folder.

A failed ingest leaves nothing behind: outputs are written atomically and folders it created for them are
removed again. The one exception is deliberate: when ``--skip-bad`` skipped every input, ``skipped.csv``
(beside ``--out``) is written so the reasons can be read, and the run fails with :class:`NoUsableImagesError`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import typer

from ..errors import DataError, UserError
from ..fsutil import atomic_file, existing_ancestor, make_parents, remove_created
from .common import console

SKIPPED_COLUMNS = ["file", "reason"]


def run_ingest(
    fmt: str,
    root: Path,
    out: Path,
    labels: Path | None = None,
    skip_bad: bool = False,
    *,
    key_file: Path | None = None,
    relative_paths: bool = False,
    verify_pixels: bool = False,
) -> dict:
    """Run an adapter and write ``out`` (+ ``lesions.<ext>`` and ``skipped.csv`` beside it); returns counts.

    Paths in the manifest are relative to the manifest's folder, or with ``relative_paths`` relative to
    ``root`` (nothing above the root is written: the manifest then resolves them when it sits in the root).
    ``key_file`` (folder format) is the pseudonym key; ``verify_pixels`` decodes every file in full.
    """
    from ..data.datasets import ingest
    from ..data.datasets.common import NoUsableImagesError
    from ..data.pseudonyms import load_key
    from ..data.schema import validate_lesions, validate_manifest

    if out.suffix not in {".parquet", ".pq", ".csv"}:
        raise UserError(f"--out must end in .parquet or .csv, not {out.name!r}")
    _check_out(out)
    options: dict = {}
    key = None
    if fmt == "folder":
        key = load_key(key_file)
        if key.path is not None and key.path.resolve().parent == out.parent.resolve():
            raise UserError(f"--key-file {key.path}: keep the pseudonym key out of the output folder {out.parent}")
        options = {"key": key, "verify_pixels": verify_pixels}
    elif key_file is not None or verify_pixels:
        raise UserError("--key-file and --verify-pixels apply to --format folder (a DICOM archive)")
    result = ingest(fmt, root, labels, skip_bad, **options)
    manifest, lesions = result.tables()
    root_abs, out_dir = root.resolve(), out.parent.resolve()
    skipped_rows = [_private(f, r, root, relative_paths) for f, r in result.skipped]
    skipped = out.with_name("skipped.csv")
    created = make_parents(out.parent)
    try:
        if manifest.empty:
            if skipped_rows:  # keep the reasons: they are all the user has to go on
                _write_skipped(skipped_rows, skipped)
                raise NoUsableImagesError(
                    f"{root}: no usable images found for --format {fmt}: all {len(skipped_rows)} input(s) were "
                    f"skipped; the reasons are in {skipped}"
                )
            raise NoUsableImagesError(f"{root}: no usable images found for --format {fmt}")
        if relative_paths:
            base = root_abs
            _require_under_root(manifest["path"], root)
            if "mask_path" in lesions.columns:
                _require_under_root(lesions["mask_path"], root)
        else:  # paths in the manifest are relative to the root; rewrite them relative to the manifest's folder
            base = out_dir
            manifest["path"] = [_relocate(p, root_abs, out_dir) for p in manifest["path"].astype(str)]
            if "mask_path" in lesions.columns and len(lesions):
                lesions["mask_path"] = [
                    _relocate(p, root_abs, out_dir) if isinstance(p, str) and p else p for p in lesions["mask_path"]
                ]
        validate_manifest(manifest, base, f"manifest built from {root}")
        validate_lesions(lesions, manifest, f"lesions built from {root}")
        lesions_path = out.with_name("lesions" + out.suffix)
        with atomic_file(out) as tmp_m, atomic_file(lesions_path) as tmp_l:
            _write(manifest, tmp_m, out.suffix)
            _write(lesions, tmp_l, out.suffix)
        if skipped_rows:
            _write_skipped(skipped_rows, skipped)
    except BaseException:
        remove_created(created)
        raise
    return {
        "images": len(manifest),
        "lesions": len(lesions),
        "skipped": len(skipped_rows),
        "skipped_csv": str(skipped),
        "key_file": str(key.path) if key is not None and key.path is not None else None,
        "key_created": bool(key is not None and key.created),
        "relative_to_root": relative_paths and out_dir != root_abs,
    }


def _check_out(out: Path) -> None:
    """A named error, before any work, for an --out that cannot be written (a folder, or under a file)."""
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name ending in .parquet or .csv")
    parent = existing_ancestor(out.parent)
    if not parent.is_dir():
        raise UserError(f"--out {out}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: folder {parent} is not writable")


def _private(file: str, reason: str, root: Path, relative: bool) -> tuple[str, str]:
    """A skipped (file, reason) pair; with ``relative`` the root's own path is removed from both."""
    if not relative or str(root) in ("", "."):
        return file, reason
    prefixes = sorted({str(root) + os.sep, str(root.resolve()) + os.sep}, key=len, reverse=True)
    for prefix in prefixes:
        # only where a path starts (not inside another path that merely ends with the same folder name)
        pattern = re.compile(r"(?<![\w.\-/\\])" + re.escape(prefix))
        file, reason = pattern.sub("", file), pattern.sub("", reason)
    return file, reason


def _require_under_root(paths: pd.Series, root: Path) -> None:
    outside = [str(p) for p in paths if isinstance(p, str) and p and (Path(p).is_absolute() or ".." in Path(p).parts)]
    if outside:
        raise DataError(
            f"--relative-paths: {len(outside)} path(s) lie outside --root {root} and cannot be stored relative to "
            f"it (symbolic links out of the root?): {outside[:3]}"
        )


def _write_skipped(rows: list[tuple[str, str]], path: Path) -> None:
    with atomic_file(path) as tmp:
        pd.DataFrame(rows, columns=SKIPPED_COLUMNS).to_csv(tmp, index=False)


def _write(df: pd.DataFrame, path: Path, suffix: str) -> None:
    if suffix in {".parquet", ".pq"}:
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False)


def _relocate(p: str, root: Path, out_dir: Path) -> str:
    full = Path(p) if Path(p).is_absolute() else root / p
    return os.path.relpath(full, out_dir)


def register(app: typer.Typer) -> None:
    @app.command()
    def ingest(
        fmt: str = typer.Option(
            ..., "--format", "-f", help="folder | bcs-dbt | cbis-ddsm | vindr-mammo | busi | inbreast"
        ),
        root: Path = typer.Option(..., "--root", help="dataset root folder"),
        out: Path = typer.Option(..., "--out", "-o", help="manifest to write (.parquet or .csv)"),
        labels: Path = typer.Option(None, "--labels", help="labels CSV to join (folder format)"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable files; list them in skipped.csv"),
        key_file: Path = typer.Option(
            None,
            "--key-file",
            help="folder format: pseudonym key (created, mode 0600, if missing); default $BREASTSSL_PSEUDONYM_KEY "
            "or ~/.config/breastssl/pseudonym.key",
        ),
        relative_paths: bool = typer.Option(
            False, "--relative-paths", help="store paths relative to --root only (keep the manifest in the root)"
        ),
        verify_pixels: bool = typer.Option(
            False, "--verify-pixels", help="folder format: decode every image in full (default: header checks)"
        ),
    ) -> None:
        """Build a manifest from a public dataset layout or a folder of DICOM files.

        Writes the manifest, lesions.<ext> beside it, and skipped.csv (file, reason) if --skip-bad skipped anything
        (also when it skipped everything: the run then fails, exit 2). Patient and site IDs of the folder format
        are keyed pseudonyms: keep the key file private; the same key gives the same IDs.
        """
        stats = run_ingest(
            fmt,
            root,
            out,
            labels,
            skip_bad,
            key_file=key_file,
            relative_paths=relative_paths,
            verify_pixels=verify_pixels,
        )
        if stats["key_created"]:
            console.print(
                f"created the pseudonym key {stats['key_file']} (mode 0600): keep it private and backed up; "
                "the same key gives the same patient IDs"
            )
        console.print(f"wrote {stats['images']} images and {stats['lesions']} lesions to {out}")
        if stats["skipped"]:
            console.print(f"skipped {stats['skipped']} bad inputs, listed in {stats['skipped_csv']}")
        if stats["relative_to_root"]:
            console.print(f"paths are relative to {root}: move the manifest (and lesions table) into it before use")
