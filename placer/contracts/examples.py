"""Where the example programs live: the microbenchmarks and graph kernels of ``examples/``.

The emulator measures this host's DRAM with the microbenchmarks and the experiments label
the graph kernels, so both need the binaries' folder; it is base knowledge, kept here so
neither has to import the other to find it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import placer
from placer.errors import ExternalToolError

#: The graph kernels ``make -C examples`` builds (GAP benchmark suite programs).
GRAPH_KERNELS = ("bfs", "pr", "cc", "sssp", "bc", "tc")
#: The memory microbenchmarks it builds (host DRAM measurement and calibration).
MICROBENCHMARKS = ("chase", "seqread", "seqwrite", "randupdate")


def examples_dir() -> Path:
    """The ``examples/`` folder of this checkout (next to the ``placer`` package)."""
    here = Path(placer.__file__).resolve().parent.parent / "examples"
    if (here / "Makefile").is_file():
        return here
    spec = importlib.util.find_spec("examples")  # an installed copy, found without running it
    if spec is None or not spec.submodule_search_locations:
        raise ExternalToolError(
            "the examples folder is not found (a source checkout has it next to placer/)"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def example_bin_dir(build: bool = True) -> Path | None:
    """``examples/bin``, built with ``make -C examples`` when asked and missing."""
    try:
        root = examples_dir()
    except ExternalToolError:
        return None
    bins = root / "bin"
    wanted = [*GRAPH_KERNELS, *MICROBENCHMARKS, "kvlog"]
    if build and not all((bins / b).exists() for b in wanted):
        compiler = os.environ.get("CC") or "cc"
        if shutil.which(compiler) is None:
            raise ExternalToolError(
                f"the example programs in {bins} are not built and there is no C compiler "
                f"({compiler}) to build them: install gcc with OpenMP, or pass --bin-dir"
            )
        proc = subprocess.run(["make", "-s", "-C", str(root)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise ExternalToolError(f"cannot build the examples: {tail[0]}")
    return bins if bins.is_dir() else None


#: The native third-party programs ``make -C examples thirdparty`` builds into
#: ``examples/thirdparty/bin`` (Debian sources; docs/placement.md, "The corpus").
THIRDPARTY_PROGRAMS = (
    "sqlite3",
    "xz",
    "zstd",
    "bzip2",
    "gawk",
    "jq",
    "sort",
    "ninja",
    "lua",
    "redis-server",
    "redis-benchmark",
    "redis-cli",
)

#: Applications of ``--suite corpus`` kept out of the shipped default model's training and
#: settings choice, so its score on them (``placer evaluate --model default --apps ...``)
#: is a score on programs it never saw: one of ours and three third-party, of different
#: kinds (write log + hash index, compression, a KV server under jemalloc, tree search).
HELDOUT_APPS = frozenset({"kvlog", "zstd", "redis-kv", "sklearn_neighbors"})


def thirdparty_bin_dir() -> Path:
    """``examples/thirdparty/bin`` with every third-party program built, else one clear error.

    Never builds: building downloads Debian sources (``make -C examples thirdparty``).
    """
    bins = examples_dir() / "thirdparty" / "bin"
    missing = [p for p in THIRDPARTY_PROGRAMS if not (bins / p).is_file()]
    if missing:
        raise ExternalToolError(
            f"third-party programs not built ({', '.join(missing)}): "
            "run `make -C examples thirdparty`"
        )
    return bins
