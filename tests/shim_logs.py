"""A small real shim log, shared by the tests that corrupt or fuzz one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from placer.collectors.shim.library import shim_path

ALLOCFREE = Path(__file__).resolve().parent / "shim_programs" / "allocfree.c"


def small_shim_log(work: Path) -> Path:
    """Build shim_programs/allocfree.c in ``work``, run it under the shim, return its log."""
    try:
        shim = str(shim_path())
    except Exception as exc:  # noqa: BLE001 - no compiler, no sources: the tests cannot run
        pytest.skip(f"the allocation shim is not available: {exc}")
    subprocess.run(["cc", "-g", "-O0", "-o", str(work / "p"), str(ALLOCFREE)], check=True)
    env = dict(os.environ, LD_PRELOAD=shim, PLACER_SHIM_LOG=str(work / "shim.%p.log"))
    subprocess.run([str(work / "p")], env=env, check=True)
    (log,) = work.glob("shim.*.log")
    return log
