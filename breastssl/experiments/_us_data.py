"""Synthetic ultrasound for ``us-mean-teacher``, with separately generated, powered evaluation sets (DESIGN §11).

Without a ``powered`` spec the experiment generates one set of ``synth_n`` images (the generator's own
train/val/test split, site B all test) into ``out_dir/data``. With one, mirroring the DBT design
(:mod:`._dbt_data`), every split is generated apart, with its own seed, under ``out_dir/data_powered``:

- ``train_set/``: ``synth_n`` training images of the training sites only (independent-test sites get weight 0,
  every image goes to ``train``); seed ``synth_seed``.
- ``powered_val/``: ``val_nodules`` nodule images of the training sites (early stopping chooses on these,
  never on test); seed ``synth_seed + 1000``; ids prefixed ``val-``.
- ``powered_test_<site>/``: ``test_nodules`` nodule images of one site each; seed ``synth_seed + 2000 + i``;
  ids prefixed ``test-<site>-``.

Evaluation sets hold nodules only (no normal images: they have no benign/malignant label, so they would
not count) and one image per patient (``pair_fraction = 0``: the bootstrap resamples images as independent
cases). Their malignant share is each site's own (or ``malignant_share``). The prefixes keep every patient
in one split. The merged ``manifest.csv`` and ``lesions.csv`` are written last, with ``spec.json``: a rerun with
another spec in the same folder is refused rather than silently reusing the old data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from ..config import Section
from ..errors import ConfigError

VAL_SEED_OFFSET, TEST_SEED_OFFSET = 1000, 2000


class USPoweredSpec(Section):
    """Separately generated val and test sets (sizes in nodule images = classification cases)."""

    val_nodules: int = Field(300, ge=2, description="nodule images of a val split of the training sites")
    test_nodules: int = Field(1000, ge=2, description="nodule images per test site")
    test_sites: list[str] | None = Field(None, description="sites with a test set; None: every site")
    malignant_share: float | None = Field(None, gt=0, lt=1, description="None: each site's own malignant:benign")


def _site_names(synth_set: list[str]) -> tuple[list[str], list[str]]:
    """(training sites, independent-test sites) of the generator configured by ``synth_set``."""
    from ..config import load_config
    from ..data.synth.us import USSynthConfig

    sites = load_config(USSynthConfig, None, list(synth_set)).sites
    train = [n for n, s in sites.items() if not s.independent_test and s.weight > 0]
    return train, [n for n, s in sites.items() if s.independent_test]


def _without(sites: list[str]) -> list[str]:
    """Overrides that give each of ``sites`` weight 0 (the others keep their relative weights)."""
    return [f"sites.{n}.weight=0.0" for n in sites]


def _nodules_only(sites: list[str], spec: USPoweredSpec, synth_set: list[str]) -> list[str]:
    """Overrides for an evaluation set: no normal images, one image per patient, the chosen malignant share."""
    from ..config import load_config
    from ..data.synth.us import USSynthConfig

    cfg = load_config(USSynthConfig, None, list(synth_set))
    out = ["pair_fraction=0.0"]
    for n in sites:
        mix = cfg.sites[n].class_mix
        share = spec.malignant_share
        if share is None:
            share = mix.get("malignant", 0.0) / max(mix.get("malignant", 0.0) + mix.get("benign", 0.0), 1e-9)
        out.append(f"sites.{n}.class_mix={{'malignant': {share}, 'benign': {1.0 - share}, 'normal': 0.0}}")
    return out


def powered_parts(synth_n: int, seed: int, synth_set: list[str], spec: USPoweredSpec) -> list[dict[str, Any]]:
    """The sets to generate: dicts of folder ``sub``, ``n``, ``seed``, id ``prefix``, ``split`` and ``overrides``."""
    train_sites, indep = _site_names(synth_set)
    all_sites = train_sites + indep
    test_sites = spec.test_sites if spec.test_sites is not None else all_sites
    unknown = sorted(set(test_sites) - set(all_sites))
    if unknown or not train_sites:
        raise ConfigError(f"powered.test_sites: unknown sites {unknown}; the generator has {all_sites} "
                          f"(training sites {train_sites})")  # fmt: skip
    base = list(synth_set)
    parts = [{"sub": "train_set", "n": synth_n, "seed": seed, "prefix": "", "split": None,
              "overrides": [*base, *_without(indep), "splits={'train': 1.0}"]}]  # fmt: skip
    # the val split: the training sites at their own weights, nodules only
    val = [*base, *_without(indep), *_nodules_only(train_sites, spec, base)]
    parts.append({"sub": "powered_val", "n": spec.val_nodules, "seed": seed + VAL_SEED_OFFSET, "prefix": "val-",
                  "split": "val", "overrides": [*val, "splits={'test': 1.0}"]})  # fmt: skip
    for i, site in enumerate(test_sites):
        others = [n for n in all_sites if n != site]
        sets = [*base, *_without(others), f"sites.{site}.weight=1.0", *_nodules_only([site], spec, base),
                "splits={'test': 1.0}"]  # fmt: skip
        parts.append({"sub": f"powered_test_{site}", "n": spec.test_nodules, "seed": seed + TEST_SEED_OFFSET + i,
                      "prefix": f"test-{site}-", "split": "test", "overrides": sets})  # fmt: skip
    return parts


def _check_spec(root: Path, spec: dict[str, Any]) -> None:
    """Refuse data generated with another spec (the manifest would be reused as it is)."""
    path = root / "spec.json"
    if path.is_file() and json.loads(path.read_text()) != spec:
        raise ConfigError(f"{root}: generated with another data spec ({path}); use another out_dir or delete {root}")


def ensure_us_data(
    root: Path, synth_n: int, seed: int, synth_set: list[str], spec: USPoweredSpec | None, echo: Callable = print
) -> Path:
    """Generate the synthetic ultrasound data into ``root`` unless complete; returns the manifest's path."""
    from ..data.synth.run import run_synth
    from ..fsutil import atomic_file
    from ._dbt_data import _prefixed

    manifest = root / "manifest.csv"
    key = {"synth_n": synth_n, "seed": seed, "synth_set": list(synth_set),
           "powered": spec.model_dump(mode="json") if spec else None}  # fmt: skip
    _check_spec(root, key)
    if manifest.is_file():
        return manifest
    root.mkdir(parents=True, exist_ok=True)
    if spec is None:
        run_synth("us", root, synth_n, seed, "npy", overrides=list(synth_set), workers=1, quiet=True)
    else:
        mans, less = [], []
        for p in powered_parts(synth_n, seed, synth_set, spec):
            folder = root / p["sub"]
            if not (folder / "manifest.csv").is_file():  # a set finished before an interruption is kept
                echo(f"generating {p['n']} synthetic ultrasound images into {folder} (seed {p['seed']})")
                run_synth("us", folder, p["n"], p["seed"], "npy", overrides=p["overrides"], workers=1, quiet=True,
                          overwrite=True)  # fmt: skip
            man, les = _prefixed(folder, p["sub"], p["prefix"], p["split"])
            mans.append(man)
            less.append(les)
        with atomic_file(root / "lesions.csv") as tmp:
            pd.concat(less, ignore_index=True).to_csv(tmp, index=False)
        with atomic_file(manifest) as tmp:  # last but one: its presence means the data is complete
            pd.concat(mans, ignore_index=True).to_csv(tmp, index=False)
    (root / "spec.json").write_text(json.dumps(key, indent=2))
    return manifest
