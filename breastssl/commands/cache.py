"""`breastssl cache`: preprocess a manifest's images to training resolution into a memory-mapped cache."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import console, progress_bar


def register(app: typer.Typer) -> None:
    @app.command()
    def cache(
        manifest: Path = typer.Option(..., "--manifest", "-m", help="manifest (.csv or .parquet)"),
        out: Path = typer.Option(..., "--out", "-o", help="cache folder (created; re-runs update it)"),
        size: tuple[int, int] = typer.Option(..., "--size", help="training resolution H W"),
        shard: str = typer.Option("0/1", "--shard", help="build part i of n (0-based), e.g. 3/16"),
        workers: int = typer.Option(None, "--workers", help="processes (default: all cores)"),
        dtype: str = typer.Option("float16", "--dtype", help="float16 | float32 | uint8"),
        no_crop: bool = typer.Option(False, "--no-crop", help="keep the whole image (no breast crop)"),
        skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable rows; list them in skipped-*.csv"),
        mode: str = typer.Option(
            "prepare",
            "--mode",
            help="prepare: oriented, cropped, resized (mammography, ultrasound); dbt: DBT stacks "
            "as the DBT recipe reads them (its window, resized only), for its data.cache",
        ),
    ) -> None:
        """Write oriented, cropped, windowed, resized arrays with an index and checksums.

        Only rows whose source file or parameters changed are rebuilt. Shards built on different machines
        into one shared folder are merged into index.parquet when the last one finishes.
        """
        from ..data.cache import build_cache, parse_shard

        with progress_bar("cache") as update:
            stats = build_cache(
                manifest,
                out,
                size,
                parse_shard(shard),
                workers,
                not no_crop,
                dtype,
                skip_bad,
                progress=update,
                mode=mode,
            )
        console.print(
            f"shard {stats['shard']}: built {stats['built']}, reused {stats['reused']}, skipped {stats['skipped']}"
            + ("; index.parquet written" if stats["merged"] else "; waiting for other shards")
        )
