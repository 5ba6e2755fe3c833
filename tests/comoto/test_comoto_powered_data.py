"""The powered CoMoTo test split: generated apart from the training data, no patient in both, counted as asked."""

from __future__ import annotations

import pandas as pd
import pytest

from breastssl.errors import UserError
from breastssl.experiments._comoto_data import (
    check_test_split,
    claim_test_split,
    ensure_comoto_dbt,
    split_composition,
    volume_truth,
)
from breastssl.experiments._dbt_data import SynthSpec


@pytest.fixture(scope="module")
def powered(tmp_path_factory) -> tuple[pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("dbt_powered")
    ensure_comoto_dbt(root, 0, SynthSpec(n=8, seed=0, test_exams=10), echo=lambda _: None)
    man = pd.read_csv(root / "manifest.csv", dtype=str).astype({"n_slices": int, "rows": int})
    return man, pd.read_csv(root / "lesions.csv", dtype={"image_id": str}).astype({"slice": int})


def test_the_test_split_is_generated_apart_with_no_patient_in_two_splits(powered):
    man, _ = powered
    train, test = man[man["split"] == "train"], man[man["split"] == "test"]
    assert set(man["split"]) == {"train", "test"} and test["exam_id"].nunique() == 10
    assert test["patient_id"].str.startswith("test-").all() and not train["patient_id"].str.startswith("test-").any()
    for col in ("image_id", "exam_id", "patient_id"):
        assert not set(train[col]) & set(test[col])
    assert test["path"].str.startswith("powered_test/").all() and train["path"].str.startswith("train_set/").all()


def test_the_composition_counts_the_lesion_volumes_and_the_check_refuses_too_few(powered):
    man, les = powered
    comp = split_composition(man, les)
    _, boxes, labels = volume_truth(man, les)
    lesion_volumes = len(boxes[["StudyUID", "View"]].drop_duplicates())
    assert comp["test_lesion_volumes"] == lesion_volumes > 0
    assert comp["test_volumes"] == len(labels) == 40 and comp["test_lesions"] == len(boxes)
    assert comp["patients_in_train_and_test"] == 0
    check_test_split(comp, lesion_volumes)
    with pytest.raises(UserError, match="min_test_lesion_volumes"):
        check_test_split(comp, lesion_volumes + 1)


def test_an_out_dir_scored_on_another_test_split_is_refused(powered, tmp_path):
    man, les = powered
    comp = split_composition(man, les)
    claim_test_split(tmp_path, man, comp)
    claim_test_split(tmp_path, man, comp)  # the same split again: fine
    other = man.assign(split=man["split"].where(man["exam_id"] != man["exam_id"].iloc[-1], "train"))
    with pytest.raises(UserError, match="another test split"):
        claim_test_split(tmp_path, other, split_composition(other, les))
    legacy = tmp_path / "legacy"  # runs from before the record, scored on volumes of another split
    (legacy / "seed0" / "frac1" / "lskd").mkdir(parents=True)
    pd.DataFrame({"StudyUID": ["dbt-e000001"]}).to_csv(legacy / "seed0/frac1/lskd/predictions_volume.csv")
    with pytest.raises(UserError, match="outside this test split"):
        claim_test_split(legacy, man, comp)
