"""Each report kind opened in a real headless Chromium: no console errors, a screenshot.

Chromium (Debian's ``chromium``) is installed with apt-get when absent and we are root;
otherwise the test is skipped and says why. Console messages reach stderr through
``--enable-logging=stderr`` as ``CONSOLE`` lines; a control page that does log an error
proves the check can fail. Set ``PLACER_SCREENSHOTS=DIR`` to keep the screenshots (the
README's pictures in docs/screenshots/ are made this way).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from placer.reports import build
from placer.reports.render import render
from tests.chromium import screenshot
from tests.report_fixtures import open_store, seed_daemon, seed_pipeline, seed_run


def _chromium() -> str:
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.skip("chromium is not installed and we are not root to apt-get install it")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        if res.returncode != 0:
            pytest.skip(
                f"cannot install chromium: {' '.join(cmd)} failed: "
                f"{(res.stderr.strip().splitlines() or ['?'])[-1]}"
            )
    found = shutil.which("chromium")
    if not found:
        pytest.skip("chromium is still missing after apt-get install")
    return found


@pytest.mark.slow
def test_reports_render_in_chromium_without_console_errors(sqlite_url: str, tmp_path: Path) -> None:
    browser = _chromium()
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom')</script></body></html>"
    )
    assert screenshot(browser, control, tmp_path / "control.png", tmp_path, 300), (
        "the console check cannot see console errors"
    )

    store = open_store(sqlite_url)
    try:
        run_id = seed_run(store, evil=True)
        pid = seed_pipeline(store)
        seed_daemon(store)
        docs = {
            "run": build(store, "run", run_id),
            "pipeline": build(store, "pipeline", pid),
            "fleet": build(store, "fleet"),
        }
    finally:
        store.dispose()
    keep = os.environ.get("PLACER_SCREENSHOTS")
    for kind, doc in docs.items():
        page = tmp_path / f"{kind}.html"
        page.write_text(render(doc, "html"), encoding="utf-8")
        shot = tmp_path / f"{kind}.png"
        console = screenshot(browser, page, shot, tmp_path)
        assert console == [], f"{kind} report logged to the console: {console}"
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, kind
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / f"report-{kind}.png")
