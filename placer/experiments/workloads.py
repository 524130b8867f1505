"""The example suite as labeling workloads: where the binaries are, which commands to run.

The corpus covers every graph kernel on Kronecker (``-g``) and uniform (``-u``) graphs at
three scales, the four memory microbenchmarks and the Python embedding workload. Scales
keep a deep (valgrind) profile of each under ~15 s on this project's 2-core hosts while the
largest graphs exceed the LLC (the regime where placement matters).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from placer.errors import ExternalToolError

GRAPH_KERNELS = ("bfs", "pr", "cc", "sssp", "bc", "tc")
GRAPH_SCALES = {"default": (14, 16, 18), "tc": (12, 14, 16)}
MICRO = {
    "chase": ["-m", "128M", "-i", "3000000"],
    "seqread": ["-m", "128M", "-i", "20"],
    "seqwrite": ["-m", "128M", "-i", "20"],
    "randupdate": ["-m", "128M", "-i", "10000000"],
}


@dataclass(frozen=True)
class Workload:
    """One program of the corpus: its application name and command line."""

    app: str
    command: list[str]
    group: str  # graph | micro | python


def examples_dir() -> Path:
    """The ``examples/`` folder of this checkout (next to the ``placer`` package)."""
    import placer

    here = Path(placer.__file__).resolve().parent.parent / "examples"
    if (here / "Makefile").is_file():
        return here
    try:
        import examples
    except ImportError:
        raise ExternalToolError(
            "the examples folder is not found (a source checkout has it next to placer/)"
        ) from None
    return Path(examples.__file__).resolve().parent


def example_bin_dir(build: bool = True) -> Path | None:
    """``examples/bin``, built with ``make -C examples`` when asked and missing."""
    try:
        root = examples_dir()
    except ExternalToolError:
        return None
    bins = root / "bin"
    wanted = [*GRAPH_KERNELS, *MICRO]
    if build and not all((bins / b).exists() for b in wanted):
        proc = subprocess.run(["make", "-s", "-C", str(root)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise ExternalToolError(f"cannot build the examples: {tail[0]}")
    return bins if bins.is_dir() else None


def suite(quick: bool = False) -> list[Workload]:
    """Every workload of ``--suite examples`` (``quick``: one small scale, for tests)."""
    bins = example_bin_dir(build=True)
    if bins is None:
        raise ExternalToolError("examples/bin not found: run `make -C examples`")
    out: list[Workload] = []
    for kernel in GRAPH_KERNELS:
        scales = GRAPH_SCALES.get(kernel, GRAPH_SCALES["default"])
        for gen, flag in (("kron", "-g"), ("uniform", "-u")):
            for scale in scales[:1] if quick else scales:
                out.append(
                    Workload(
                        f"{kernel}-{gen}{scale}",
                        [str(bins / kernel), flag, str(scale), "-n", "1"],
                        "graph",
                    )
                )
    for name, args in MICRO.items():
        out.append(Workload(name, [str(bins / name), *args], "micro"))
    emb = examples_dir() / "python" / "embedding.py"
    if emb.exists():
        out.append(
            Workload(
                "embedding-py",
                [sys.executable, str(emb), "--scale", "0.25", "--batches", "60"],
                "python",
            )
        )
    return out
