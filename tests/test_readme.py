"""The README's quick start works as written, line by line, on a fresh store."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def quickstart_lines() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- quickstart:[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert block, "README.md lost its quick start block"
    return [line.split("  #")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_quick_start_covers_profile_recommend_export_and_run() -> None:
    commands = [" ".join(line.split()[:2]) for line in quickstart_lines()]
    for step in ("placer profile", "placer recommend", "placer plan", "placer run"):
        assert step in commands, step


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler to build the examples")
def test_the_quick_start_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(REPO / "examples", work / "examples", symlinks=True)
    env = {
        **os.environ,
        "PLACER_DATA_DIR": str(tmp_path / "data"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for line in quickstart_lines():
        res = subprocess.run(
            line, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300
        )
        assert res.returncode == 0, f"{line}: {res.stderr.strip()[-500:]}"
    assert (work / "plan.json").is_file()
    assert "LD_PRELOAD=" in (work / "placer.env").read_text()
