"""Headless Chromium as the report tests and scripts/screenshots.py run it.

Console messages reach stderr through ``--enable-logging=stderr`` as ``CONSOLE`` lines.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
]


def screenshot(browser: str, page: Path, shot: Path, tmp: Path, height: int = 2000) -> list[str]:
    """Load ``page``, save a screenshot; returns the console lines Chromium logged."""
    res = subprocess.run(
        [
            browser,
            *FLAGS,
            f"--user-data-dir={tmp / ('profile-' + page.stem)}",
            f"--screenshot={shot}",
            f"--window-size=1280,{height}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if res.returncode != 0:
        raise RuntimeError(f"chromium exited {res.returncode}: {res.stderr[-2000:]}")
    return [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
