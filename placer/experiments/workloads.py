"""The example suite as labeling workloads: where the binaries are, which commands to run.

The corpus covers every graph kernel on Kronecker (``-g``) and uniform (``-u``) graphs at
three scales, the four memory microbenchmarks and the Python embedding workload. Scales
keep a deep (valgrind) profile of each under ~15 s on this project's 2-core hosts while the
largest graphs exceed the LLC (the regime where placement matters).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from placer.contracts.examples import (
    GRAPH_KERNELS,
    example_bin_dir,
    examples_dir,
)
from placer.errors import ExternalToolError

GRAPH_SCALES = {"default": (14, 16, 18), "tc": (12, 14, 16)}
MICRO = {  # one entry per placer.contracts.examples.MICROBENCHMARKS
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
