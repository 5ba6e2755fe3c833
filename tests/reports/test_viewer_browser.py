"""The viewer in headless Chromium (issue 19): it loads without a console message or script error, its slider
(and wheel, arrow keys, top-slice buttons, study list, heatmap opacity) change what is displayed, and a screenshot
of it is written.

Chromium is driven from its command line (no Python browser driver): ``--dump-dom`` on ``viewer.html#selftest``,
where the page drives its own controls and writes the result into a ``<pre id="selftest">`` element, and
``--screenshot``. ``--virtual-time-budget`` lets the page's image loads and promises finish before the dump.
Skipped where no Chromium is installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from viewer_fixtures import make_2d, make_comoto, make_dbt

from breastssl.reports.headless import find_chromium, run_page
from breastssl.reports.viewer import build_viewer

pytestmark = pytest.mark.skipif(
    find_chromium() is None, reason="no Chromium (/usr/bin/chromium or chromium on PATH): `apt-get install chromium`"
)


def self_test(page: Path) -> dict:
    """Run the page's #selftest in Chromium; its JSON result, with the page's console lines added."""
    run = run_page(page, "selftest")
    m = re.search(r'<pre id="selftest"[^>]*>(.*?)</pre>', run.stdout, re.S)
    assert m, f"the self-test wrote no result (exit {run.returncode}); console: {run.console}"
    result = json.loads(html.unescape(m.group(1)))
    result["console"] = run.console
    return result


@pytest.mark.parametrize("kind", ["dbt", "comoto", "mammo", "us"])
def test_the_viewer_runs_its_self_test_without_console_errors(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "pred"
    if kind == "dbt":  # two exams (study list), a flipped view, heatmaps, boxes and a score curve
        make_dbt(root, n_exams=2, n_slices=6, flip_left=True)
    elif kind == "comoto":  # a detector's stacks: slider and boxes, no heatmap, no score curve
        make_comoto(root)
    else:
        make_2d(root, "MG" if kind == "mammo" else "US")
    page = build_viewer(root).path
    result = self_test(page)
    failed = [c for c in result["checks"] if not c["pass"]]
    assert result["pass"] and not failed, failed
    assert result["console"] == []  # the page logs nothing: any console line is an error or a warning
    names = {c["name"] for c in result["checks"]}
    if kind == "dbt":
        assert {
            "the slider moves the displayed slice",
            "the displayed pixels change",
            "the mouse wheel moves one slice",
            "an arrow key moves one slice",
            "choosing a study shows its views",
        } <= names
    assert ("the heatmap opacity changes the display" in names) == (kind in ("dbt", "mammo"))
    assert ("the slider moves the displayed slice" in names) == (kind in ("dbt", "comoto"))


def test_a_screenshot_is_written(tmp_path: Path) -> None:
    page = build_viewer(make_dbt(tmp_path / "pred", n_slices=4, size=(80, 64))).path
    shot = tmp_path / "shot.png"
    run = run_page(page, screenshot=shot, window=(1400, 900))
    assert shot.is_file(), f"no screenshot (exit {run.returncode})"
    assert shot.stat().st_size > 20_000
    im = np.asarray(Image.open(shot).convert("RGB"))
    assert im.shape == (900, 1400, 3)
    assert im.std() > 10 and len(np.unique(im.reshape(-1, 3), axis=0)) > 500  # a drawn page, not a blank one
