"""`breastssl experiment mammo-self-training` end to end at the smallest scale: labeller, cells, seeds, report."""

from __future__ import annotations

import json

from breastssl.cli import main


def test_experiment_two_seeds_mean_and_reuse(tmp_path):
    out = tmp_path / "exp"
    args = ["experiment", "mammo-self-training", "--out", str(out), "--n-exams", "120", "--labeller", "tfidf",
            "--steps-per-epoch", "1", "--stage1-epochs", "1", "--round-epochs", "2", "--p0-every", "1",
            "--only", "full25_weak100", "--seeds", "0,1"]  # fmt: skip
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert set(res["nlp"]) == {"tfidf"} and set(res["nlp"]["tfidf"]) == {"L", "R"}
    assert set(res["runs"]) == {
        "full25_weak100",
        *(f"full25_weak100_mask{m}_nlp{n}" for m, n in (("hard", "hard"), ("hard", "soft"), ("soft", "hard"))),
    }
    cell = res["runs"]["full25_weak100"]
    assert cell["n_seeds"] == 2 and [r["seed"] for r in cell["per_seed"]] == [0, 1]
    assert abs(cell["mean"] - sum(r["mean"] for r in cell["per_seed"]) / 2) < 1e-12 and cell["mean_sd"] >= 0
    assert cell["mining"] and {"TP", "FP", "FN", "TN", "unsure", "p0"} <= set(cell["mining"][0])
    assert (out / "runs" / "seed1" / "full25_weak100" / "metrics.json").is_file()
    html = (out / "report.html").read_text()
    assert "Table 3" in html and "Table 4" in html and "Fig. 4" in html and "±" in html
    # finished runs are read back, not retrained: a rerun leaves every metrics.json untouched
    stamp = (out / "runs" / "seed0" / "full25_weak100" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "runs" / "seed0" / "full25_weak100" / "metrics.json").stat().st_mtime_ns == stamp
    assert main([*args[:-2], "--seeds", "0,x"]) == 2


def test_only_patterns():
    from breastssl.experiments.mammo_self_training import _selected

    assert _selected("full25_weak100", "full25_weak100$") and not _selected(
        "full25_weak100_maskhard_nlphard", "full25_weak100$"
    )
    assert (
        _selected("full100_weak0", "full1")
        and _selected("full50_weak0", "full1, full50")
        and not _selected("full50_weak0", "full25")
    )
