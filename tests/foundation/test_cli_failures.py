"""Every command's failure on bad input is a named error: exit 2, no traceback, no partial output (issue 17).

One bad invocation per command and failure kind (missing or empty files, an output under a file, unknown names,
invalid values, configs of the wrong kind); each must exit 2 with a message, print no traceback, and leave no
output path behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from breastssl.cli import main


def cases(t: Path) -> list[tuple[str, list[str]]]:
    def p(name: str) -> str:
        return str(t / name)

    return [
        ("evaluate missing file", ["evaluate", p("missing.csv"), "--manifest", p("bad.csv"), "--out", p("o")]),
        ("evaluate empty file", ["evaluate", p("empty.csv"), "--manifest", p("bad.csv"), "--out", p("o")]),
        ("evaluate out under a file", ["evaluate", p("bad.csv"), "--manifest", p("bad.csv"), "--out", p("file/o")]),
        ("predict run not a run", ["predict", "--run", p("dir"), p("bad.csv"), "--out", p("o")]),
        ("predict us not a bundle", ["predict", "--model", p("file"), "--modality", "us", p("dir"), "--out", p("o")]),
        (
            "predict mg not a checkpoint",
            ["predict", "--model", p("file"), "--modality", "mg", p("dir"), "--out", p("o")],
        ),
        ("export empty folder", ["export", "--run", p("dir"), "--out", p("o")]),
        ("export not a run file", ["export", "--run", p("file"), "--out", p("o")]),
        ("cache bad manifest", ["cache", "--manifest", p("bad.csv"), "--out", p("o")]),
        ("label-reports bad manifest", ["label-reports", p("bad.csv"), "--out", p("o.csv"), "--model", "tfidf"]),
        ("synth out under a file", ["synth", "dbt", "--out", p("file/x"), "--n", "1"]),
        ("synth unknown modality", ["synth", "xyz", "--out", p("o"), "--n", "1"]),
        ("synth n 0", ["synth", "dbt", "--out", p("o"), "--n", "0"]),
        ("train unknown strategy", ["train", "-c", p("cfg.yaml")]),
        ("train missing recipe", ["train", "-c", p("missing.yaml")]),
        ("train a CSV as recipe", ["train", "-c", p("bad.csv")]),
        ("ingest unknown format", ["ingest", "--format", "nope", "--root", p("dir"), "--out", p("o.csv")]),
        ("ingest empty busi root", ["ingest", "--format", "busi", "--root", p("dir"), "--out", p("o.csv")]),
        ("experiment comoto bad config", ["experiment", "comoto", "-c", p("cfg.yaml")]),
        ("experiment us bad config", ["experiment", "us-mean-teacher", "-c", p("cfg.yaml")]),
        ("experiment dbt bad config", ["experiment", "dbt-selectivekd", "-c", p("cfg.yaml")]),
        ("experiment mammo bad config", ["experiment", "mammo-self-training", "-c", p("cfg.yaml")]),
        ("experiment mammo empty data", ["experiment", "mammo-self-training", "--data", p("dir"), "--out", p("o")]),
        ("demo negative steps", ["demo", "--steps", "-1"]),
    ]


NAMES = [name for name, _ in cases(Path("/t"))]


@pytest.mark.parametrize("name", NAMES)
def test_failure_is_exit_2_named_without_partial_output(name, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the demo's default output lands here if it ever started
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    (tmp_path / "cfg.yaml").write_text("train: {steps: 3}\nstrategy: {name: nope}\n")
    (tmp_path / "dir").mkdir()
    before = set(tmp_path.iterdir())
    args = dict(cases(tmp_path))[name]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert ("error" in err.lower() or "invalid value" in err.lower()) and "Traceback" not in err
    assert set(tmp_path.iterdir()) == before, f"left behind: {set(tmp_path.iterdir()) - before}"
