"""Headless Chromium from its command line: load a local HTML file, dump its DOM or take a screenshot.

Used by the viewer's browser test and by ``scripts/viewer_demo.py`` (the docs screenshot); no Python
browser driver is needed. Every run gets a fresh profile folder and the switches that keep Chromium off the
network (no component updates, sync or background requests), so a run on a machine without network is the same.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
QUIET = (
    "--headless",
    "--no-sandbox",  # root in a container has no user namespace for the sandbox
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--mute-audio",
)


@dataclass
class BrowserRun:
    """What one Chromium run printed: ``stdout`` (the DOM of ``--dump-dom``) and the page's console lines."""

    stdout: str
    console: list[str]
    returncode: int


def find_chromium() -> str | None:
    """The Chromium executable: ``/usr/bin/chromium`` (Debian's package) or the first candidate on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return next((p for name in CANDIDATES if (p := shutil.which(name))), None)


def run_page(
    page: str | Path,
    fragment: str = "",
    *,
    screenshot: str | Path | None = None,
    window: tuple[int, int] = (1400, 900),
    budget_ms: int = 10000,
    timeout_s: float = 60.0,
    browser: str | None = None,
) -> BrowserRun:
    """Open ``page`` (a local file) with ``#fragment``, let it run for up to ``budget_ms`` of virtual time (pending
    loads and timers complete first), then print its DOM, or write a PNG ``screenshot`` of ``window`` (w, h).

    Console messages come from ``--enable-logging=stderr``: Chromium prints each as an ``INFO:CONSOLE`` line.
    """
    exe = browser or find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (/usr/bin/chromium or chromium on PATH)")
    url = Path(page).resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="breastssl-chromium-") as profile:
        args = [exe, *QUIET, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                f"--virtual-time-budget={budget_ms}", f"--window-size={window[0]},{window[1]}"]  # fmt: skip
        args += [f"--screenshot={Path(screenshot).resolve()}"] if screenshot is not None else ["--dump-dom"]
        proc = subprocess.run([*args, url], capture_output=True, text=True, timeout=timeout_s, check=False)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return BrowserRun(proc.stdout, console, proc.returncode)
