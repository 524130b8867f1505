"""Build the example workloads on demand: ``examples_bin("pr")`` returns a runnable path.

Tests, benchmarks and ``placer experiment --suite examples`` call this instead of
assuming ``make -C examples`` ran. It runs ``make`` once per process (make itself skips
up-to-date binaries) under a file lock, so concurrent callers never see a half-built
binary. Run ``python examples/build.py`` to build everything and list the binaries.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

EXAMPLES_DIR = Path(__file__).resolve().parent
BIN_DIR = EXAMPLES_DIR / "bin"
GRAPH_KERNELS = ("bfs", "pr", "cc", "sssp", "bc", "tc")
GRAPH_TOOLS = ("gen",)
MICROBENCHMARKS = ("chase", "seqread", "seqwrite", "randupdate")
#: allocation churn (issue 17: cost that grows with the allocation count)
SCALE_TOOLS = ("churn",)
ALL_BINARIES = GRAPH_KERNELS + GRAPH_TOOLS + MICROBENCHMARKS + SCALE_TOOLS
EMBEDDING_SCRIPT = EXAMPLES_DIR / "python" / "embedding.py"

_built = False
_lock = threading.Lock()


class ExamplesBuildError(RuntimeError):
    """The C examples could not be built (no compiler, no make, a compile error)."""


def build(force: bool = False) -> Path:
    """Run ``make -C examples`` (once per process unless ``force``); return the bin dir."""
    global _built
    with _lock:
        if _built and not force:
            return BIN_DIR
        make = shutil.which("make")
        if make is None:
            raise ExamplesBuildError("cannot build the examples: 'make' is not installed")
        BIN_DIR.mkdir(exist_ok=True)
        with open(BIN_DIR / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            jobs = str(min(os.cpu_count() or 1, 4))
            done = subprocess.run(
                [make, "-s", "-j", jobs, "-C", str(EXAMPLES_DIR)],
                capture_output=True,
                text=True,
            )
        if done.returncode != 0:
            lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            detail = next((ln for ln in lines if "error" in ln), lines[-1] if lines else "")
            raise ExamplesBuildError(f"building the examples failed: {detail.strip()}")
        _built = True
        return BIN_DIR


def examples_bin(name: str) -> Path:
    """Path of the example binary ``name`` (one of :data:`ALL_BINARIES`), built if needed."""
    if name not in ALL_BINARIES:
        raise ValueError(f"unknown example {name!r}; known: {', '.join(ALL_BINARIES)}")
    path = build() / name
    if not os.access(path, os.X_OK):
        raise ExamplesBuildError(f"building the examples did not produce {path}")
    return path


def main() -> int:
    try:
        bin_dir = build(force=True)
    except ExamplesBuildError as exc:
        print(f"examples: error: {exc}", file=sys.stderr)
        return 2
    for name in ALL_BINARIES:
        print(bin_dir / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
