"""Paired FROC effects over seeds × test exams on hand-built detections, and the tune stage's choice."""

from __future__ import annotations

import json

import numpy as np

from breastssl.experiments._selftrain_effects import claims_with_ci, effects_summary, exam_image_weights
from breastssl.experiments._selftrain_tune import TuneSpec, candidate_name, choose, run_tune
from breastssl.strategies.self_training_detections import Detections


def _dets(found: np.ndarray, n_fp: int, rng: np.random.Generator) -> Detections:
    """One lesion per image on the first half of N images; ``found`` (N,) bool: a region hits that lesion.

    n_fp false-positive regions on random images, scored below every hit, so sensitivity at low FPPI is the
    share found."""
    n = len(found)
    les_img = np.arange(n // 2)
    hit_img = les_img[found[: n // 2]]
    fp_img = rng.integers(0, n, n_fp)
    scores = np.r_[rng.uniform(0.6, 0.9, len(hit_img)), rng.uniform(0.3, 0.5, n_fp)]
    lesion_score = np.full(len(les_img), -np.inf)
    lesion_score[found[: n // 2]] = scores[: len(hit_img)]
    n_les = np.zeros(n, int)
    n_les[les_img] = 1
    return Detections(np.array([f"i{i}" for i in range(n)]), n_les, 0.25, np.r_[hit_img, fp_img], scores,
                      np.r_[np.ones(len(hit_img), bool), np.zeros(n_fp, bool)], les_img, lesion_score,
                      np.zeros(0), np.zeros((0, n), int), np.zeros((0, n), int))  # fmt: skip


def test_exam_weights_give_all_images_of_an_exam_one_count():
    exams = np.repeat([f"e{i}" for i in range(10)], 4)
    n_les = np.zeros(40, int)
    n_les[:8] = 1  # exams e0, e1 have lesions
    w = exam_image_weights(exams, n_les, 200, np.random.default_rng(0))
    assert w.shape == (200, 40) and (w.reshape(200, 10, 4) == w.reshape(200, 10, 4)[:, :, :1]).all()
    assert np.allclose(w[:, :8].sum(axis=1), 8) and np.allclose(w.sum(axis=1), 40)  # strata keep their sizes


def test_clearly_better_arm_has_ci_above_zero_and_claim_holds():
    rng = np.random.default_rng(0)
    n = 400
    exam_of = {f"i{i}": f"e{i // 4}" for i in range(n)}
    dets = {}
    for s in range(5):
        base = rng.random(n) < 0.35
        dets[(s, "full25_weak0")] = _dets(base, 40, rng)
        dets[(s, "full25_weak100")] = _dets(base | (rng.random(n) < 0.5), 40, rng)  # finds ~67% instead of ~35%
        dets[(s, "full25_weak100_maskhard_nlphard")] = _dets(rng.random(n) < 0.35, 40, rng)
    res = effects_summary(dets, exam_of, n_boot=300)
    mean = [
        r for r in res["effects"] if r["a"] == "full25_weak100" and r["b"] == "full25_weak0" and r["metric"] == "mean"
    ]
    assert len(mean) == 1 and mean[0]["ci_low"] > 0.15 and mean[0]["seeds_positive"] == 5 and mean[0]["seeds"] == 5
    claims = {c["claim"]: c["holds"] for c in res["claims"]}
    assert claims["Table 3: weak data improves detection at 25% labelled"] is True
    assert claims["Table 4: soft mask + soft NLP labels beat hard ones"] is True
    assert claims["Table 3: weak data improves detection at 10% labelled"] is None  # cells not run
    cis = {(r["cell"], r["metric"]): r for r in res["cell_cis"]}
    r = cis[("full25_weak0", "mean")]
    assert r["ci_low"] < r["value"] < r["ci_high"] and 0.2 < r["value"] < 0.5


def test_equal_arms_do_not_make_a_claim_hold():
    import pandas as pd

    eff = pd.DataFrame([{"a": "full25_weak100", "b": "full25_weak0", "metric": "mean", "seeds": 5, "delta": 0.01,
                         "ci_low": -0.02, "ci_high": 0.04, "seeds_positive": 3, "delta_sd": 0.02}])  # fmt: skip
    claims = {c["claim"]: c for c in claims_with_ci(eff)}
    c = claims["Table 3: weak data improves detection at 25% labelled"]
    assert c["holds"] is False and "3/5 seeds > 0" in c["figures"]


def test_choose_takes_highest_mean_and_first_on_a_tie():
    assert choose({(None, 0.25): [0.3, 0.4], (0.5, 0.25): [0.5, 0.4]}) == (0.5, 0.25)
    assert choose({(None, 0.25): [0.4, 0.4], (0.5, 0.25): [0.3, 0.5]}) == (None, 0.25)


def test_run_tune_trains_every_candidate_and_writes_the_choice(tmp_path):
    spec = TuneSpec((None, 0.5), (0.25, 0.15), (0, 1))
    calls = []

    def train_on_val(seed, fs, t, run_dir):
        calls.append((seed, fs, t, run_dir.name))
        return {"mean": 0.3 + (0.1 if fs == 0.5 and t == 0.15 else 0.0) + 0.01 * seed}

    res = run_tune(spec, train_on_val, tmp_path, n_val_images=40)
    assert len(calls) == 8 and {c[3] for c in calls} == {candidate_name(fs, t) for fs, t in spec.candidates}
    assert res["choice"] == {"full_share": 0.5, "lesion_threshold": 0.15} and res["split"] == "val"
    assert json.loads((tmp_path / "tune.json").read_text())["choice"] == res["choice"]
    assert "0.405" in res["why"] and "paper's literal setting" in res["why"]
