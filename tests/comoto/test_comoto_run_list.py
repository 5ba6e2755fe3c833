"""`breastssl experiment comoto` is a list of `breastssl train` runs: the cells and the teachers they need."""

from __future__ import annotations

import json

from breastssl.experiments._comoto_runs import comoto_specs
from breastssl.experiments.comoto import ComotoExperimentConfig


def _cfg(tmp_path, **kw):
    return ComotoExperimentConfig(out_dir=str(tmp_path / "run"), dbt_dir=str(tmp_path / "dbt"),
                                  mammo_dir=str(tmp_path / "mammo"), **kw)  # fmt: skip


def test_each_cell_is_a_comoto_run_needing_only_its_teacher(tmp_path):
    cfg = _cfg(tmp_path, seeds=[0, 3], rows=["dbt_only", "lskd_impa"], fractions=[1.0, 0.1], teacher_steps=7)
    specs = {s.name: s for s in comoto_specs(cfg, tmp_path / "run")}
    teachers = sorted(n for n in specs if "teacher" in n)
    assert teachers == ["seed0/teacher_impa", "seed3/teacher_impa"]  # no plain teacher: no row uses one
    t = specs["seed3/teacher_impa"].cfg
    assert t.strategy.name == "comoto_teacher" and t.strategy.impa and t.train.seed == 3 and t.train.steps == 7
    s = specs["seed3/frac0.1/lskd_impa"]
    assert s.needs == ["seed3/teacher_impa"] and s.cfg.strategy.name == "comoto" and s.cfg.data.fraction == 0.1
    assert s.cfg.teacher.run == str(tmp_path / "run" / "seed3" / "teacher_impa")
    base = specs["seed0/frac1/dbt_only"]
    assert base.needs == [] and base.cfg.teacher.student_init == "scratch" and base.cfg.teacher.run is None
    assert base.cfg.strategy.name == "pretraining" and base.cfg.train.out_dir == str(
        tmp_path / "run/seed0/frac1/dbt_only"
    )


def test_cells_with_a_result_are_not_listed_nor_their_teachers(tmp_path):
    cfg = _cfg(tmp_path, seeds=[0], rows=["lskd"], fractions=[1.0])
    done = tmp_path / "run" / "seed0" / "frac1" / "lskd"
    done.mkdir(parents=True)
    (done / "result.json").write_text(json.dumps({"seed": 0}))
    assert comoto_specs(cfg, tmp_path / "run") == []
