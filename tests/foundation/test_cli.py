"""CLI: help texts, user errors exit 2 without traceback and leave no output behind."""

from __future__ import annotations

import subprocess
import sys

from breastssl.cli import main


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for cmd in ("synth", "demo", "evaluate"):
        assert cmd in out


def test_synth_help_explains_options(capsys):
    assert main(["synth", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--format" in out and "--preview" in out and "--seed" in out


def test_unknown_modality_is_user_error(tmp_path, capsys):
    code = main(["synth", "ct", "--out", str(tmp_path / "x"), "--n", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown modality 'ct'" in err
    assert not (tmp_path / "x").exists()


def test_unknown_config_key_is_user_error(tmp_path, capsys):
    code = main(["synth", "dbt", "--out", str(tmp_path / "x"), "--n", "2", "--set", "hieght=10"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown key 'hieght'" in err and "height" in err
    assert not (tmp_path / "x").exists()


def test_bad_format_and_n(tmp_path, capsys):
    assert main(["synth", "dbt", "--out", str(tmp_path / "x"), "--format", "png"]) == 2
    assert main(["synth", "dbt", "--out", str(tmp_path / "x"), "--n", "0"]) == 2
    assert not (tmp_path / "x").exists()


def test_existing_output_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["synth", "dbt", "--out", str(out), "--n", "1", "--format", "npy"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


def test_console_script_exit_code_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "breastssl.cli", "synth", "ct", "--out", str(tmp_path / "y")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "unknown modality" in proc.stderr


def test_click_usage_error_exit_code(capsys):
    assert main(["synth"]) == 2  # missing argument
