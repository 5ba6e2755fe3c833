"""The config of ``breastssl experiment mammo-self-training``: a YAML file like the other experiments' (issue 16).

``-c FILE`` and ``--set key=value`` give every setting; a flag typed on the command line (``--seeds 0,1``)
overrides the file. ``configs/mammo_self_training_demo.yaml`` and ``configs/mammo_self_training_powered.yaml``
hold the measured recipes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.core import ParameterSource
from pydantic import Field

from ..config import Section, apply_overrides, build_config, read_yaml


class MammoExperimentConfig(Section):
    """Every setting of the experiment (the command's flags, by the same names with ``_`` for ``-``)."""

    out: str = Field("runs/mammo_self_training", description="experiment directory")
    data: str | None = Field(None, description="mammography dataset dir; None: synthesise one into out/data")
    n_exams: int = Field(200, ge=1, description="exams to synthesise when data is not given")
    labeller: str = Field("tfidf", description="tfidf | minilm | a Hugging Face model name or path")
    seed: int = 0
    steps_per_epoch: int = Field(10, ge=1)
    stage1_epochs: int = Field(16, ge=0)
    round_epochs: int = Field(4, ge=1)
    p0_every: int = Field(2, ge=1)
    only: str = Field("", description="run only cells matching: comma-separated substrings, NAME$ exact")
    nlp_epochs: int = Field(4, ge=1, description="fine-tuning epochs of a transformer labeller")
    seeds: str = Field("", description="image-model seeds, e.g. '0,1,2' (default: seed)")
    full_share: float | None = Field(None, gt=0, le=1, description="share of positives/negatives from full images")
    lesion_threshold: float = Field(0.25, gt=0, lt=1, description="t: mining's mask decision and the FROC's regions")
    val_exams: int = Field(0, ge=0, description="exams of a val split generated apart")
    test_exams: int = Field(0, ge=0, description="exams of a test split generated apart")
    tune: bool = Field(False, description="choose full_share and t on the val split first")
    tune_full_shares: str = "none,0.5"
    tune_thresholds: str = "0.25,0.15,0.35"
    tune_seeds: str = "0,1"
    tune_cell: str = "full25_weak100"
    n_boot: int = Field(1000, ge=0, description="bootstrap replicates of the effects (0: none)")
    jobs: int = Field(1, ge=1, description="runs trained at once, each a `breastssl train` process")
    threads: int = Field(1, ge=1, description="torch threads of each run's process")
    gpus: list[str] = Field(default_factory=list, description="GPU ids handed to concurrent runs (one each)")
    strategy: dict[str, Any] = Field(
        default_factory=dict, description="self_training strategy settings for every run, e.g. {focal_norm: positives}"
    )


def resolve_config(ctx: Any, config: Path | None, overrides: list[str], flags: dict[str, Any]) -> MammoExperimentConfig:
    """The file (if any), then ``--set`` overrides, then the flags typed on the command line (the others are only
    defaults: they fill what the file leaves out)."""
    data = read_yaml(config) if config is not None else {}
    data = apply_overrides(data, overrides)
    for name, value in flags.items():
        typed = ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
        if typed or name not in data:
            data[name] = str(value) if isinstance(value, Path) else value
    source = str(config) if config is not None else "command line"
    return build_config(MammoExperimentConfig, data, source)
