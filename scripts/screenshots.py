"""Regenerate the README's report screenshots from the store `make demo` leaves in .demo/.

    PYTHONPATH=. .venv/bin/python scripts/screenshots.py [--demo-dir .demo] [--out docs/screenshots]

Writes the run report of the run the demo planned (``plan.json``'s ``run``), the newest
pipeline's report and the fleet report with ``placer report``, opens each in headless
Chromium (the report tests' invocation, tests/chromium.py) at 1280 x 1800, fails on any
console message, and saves ``report-{run,pipeline,fleet}.png`` quantized to 128 colours.
It does not run the demo: run `make demo` first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from tests.chromium import screenshot

REPO = Path(__file__).resolve().parent.parent


def placer(store: str, *args: str) -> str:
    """``placer --store STORE ARGS`` in this interpreter; its stdout."""
    res = subprocess.run(
        [sys.executable, "-m", "placer", "--store", store, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        sys.exit(f"screenshots: placer {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-dir", type=Path, default=REPO / ".demo", help="make demo's folder")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots", help="PNG folder")
    ap.add_argument("--height", type=int, default=1800, help="window height in pixels")
    args = ap.parse_args(argv)
    db, plan = args.demo_dir / "placer.db", args.demo_dir / "plan.json"
    if not db.is_file() or not plan.is_file():
        sys.exit(f"screenshots: no demo store in {args.demo_dir} (run `make demo` first)")
    browser = shutil.which("chromium")
    if browser is None:
        sys.exit("screenshots: chromium not found (Debian: apt-get install chromium)")
    store = f"sqlite:///{db.resolve()}"
    run_id = json.loads(plan.read_text())["run"]
    pipelines = json.loads(placer(store, "pipelines", "--format", "json"))["pipelines"]
    subjects = {"run": [str(run_id)], "fleet": ["--fleet"]}
    if pipelines:
        subjects["pipeline"] = ["--pipeline", str(max(p["id"] for p in pipelines))]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="placer-shots-") as tmp_dir:
        tmp = Path(tmp_dir)
        for kind, subject in subjects.items():
            page = tmp / f"{kind}.html"
            placer(store, "report", *subject, "-o", str(page))
            shot = tmp / f"{kind}.png"
            console = screenshot(browser, page, shot, tmp, args.height)
            if console:
                sys.exit(f"screenshots: the {kind} report logged to the console: {console}")
            target = args.out / f"report-{kind}.png"
            with Image.open(shot) as img:
                img.convert("RGB").quantize(colors=128).save(target, optimize=True)
            print(target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
