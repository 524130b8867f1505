"""The labeling suites as workloads: where the binaries are, which commands to run.

``examples`` covers every graph kernel on Kronecker (``-g``) and uniform (``-u``) graphs at
three scales, the four memory microbenchmarks and the Python embedding workload. Scales
keep a deep (valgrind) profile of each under ~15 s on this project's 2-core hosts while the
largest graphs exceed the LLC (the regime where placement matters).

``corpus`` is one workload per application, most of them programs this project did not
write: Debian programs built by ``make -C examples thirdparty`` (a database engine,
compressors, sort, awk, jq, ninja, lua, redis under jemalloc), PyPI libraries (pandas,
scipy, scikit-learn, lightgbm), and ours (graph kernels, microbenchmarks, the embedding
workload, kvlog). Inputs come from ``examples/thirdparty/data.py`` (seeded). Each plain run
takes a few seconds; docs/placement.md ("The corpus") lists them.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from placer.contracts.examples import (
    GRAPH_KERNELS,
    example_bin_dir,
    examples_dir,
    thirdparty_bin_dir,
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
    # ours: graph | micro | python | app; not ours: THIRD_PARTY_GROUPS
    group: str


#: Groups of programs this project did not write: Debian builds and PyPI libraries.
THIRD_PARTY_GROUPS = frozenset({"thirdparty", "pypi"})
SUITES = ("examples", "corpus")


def graph_workload(bins: Path, kernel: str, gen: str, scale: int) -> Workload:
    """One graph kernel on a Kronecker (``kron``) or uniform graph of 2^scale vertices."""
    flag = "-g" if gen == "kron" else "-u"
    return Workload(
        f"{kernel}-{gen}{scale}", [str(bins / kernel), flag, str(scale), "-n", "1"], "graph"
    )


def suite(name: str = "examples", quick: bool = False) -> list[Workload]:
    """Every workload of ``--suite NAME`` (``quick``: one small scale, for tests)."""
    if name not in SUITES:
        raise ExternalToolError(f"unknown suite {name!r} (choose from {', '.join(SUITES)})")
    # one clear error when the third-party programs are not built; never builds them
    tp_bins = thirdparty_bin_dir() if name == "corpus" else None
    bins = example_bin_dir(build=True)
    if bins is None:
        raise ExternalToolError("examples/bin not found: run `make -C examples`")
    if tp_bins is not None:
        data = corpus_data().generate()
        return corpus(bins, tp_bins, data["access.log"].parent, examples_dir() / "python")
    out: list[Workload] = []
    for kernel in GRAPH_KERNELS:
        scales = GRAPH_SCALES.get(kernel, GRAPH_SCALES["default"])
        for gen in ("kron", "uniform"):
            for scale in scales[:1] if quick else scales:
                out.append(graph_workload(bins, kernel, gen, scale))
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


def corpus_data() -> ModuleType:
    """``examples/thirdparty/data.py`` as a module (a script folder, not a package)."""
    path = examples_dir() / "thirdparty" / "data.py"
    spec = importlib.util.spec_from_file_location("placer_corpus_data", path)
    if spec is None or spec.loader is None:
        raise ExternalToolError(f"cannot load {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _sh_to_null(*argv: str) -> list[str]:
    """A compressor writing to /dev/null (``exec``: the shell becomes the program)."""
    return ["/bin/sh", "-c", 'exec "$@" > /dev/null', "sh", *argv]


def corpus(bins: Path, tp: Path, data: Path, py_dir: Path) -> list[Workload]:
    """The workloads of ``--suite corpus`` given where binaries, inputs and scripts are."""
    log, js = str(data / "access.log"), str(data / "events.json")
    py = sys.executable
    third = [
        Workload("sqlite3", [str(tp / "sqlite3"), ":memory:", f".read {data / 'shop.sql'}"], ""),
        Workload(
            "xz",
            _sh_to_null(str(tp / "xz"), "-T1", "--lzma2=preset=1,dict=32MiB", "-c", log),
            "",
        ),
        Workload("zstd", _sh_to_null(str(tp / "zstd"), "-12", "--long=26", "-T1", "-c", log), ""),
        Workload("bzip2", _sh_to_null(str(tp / "bzip2"), "-9", "-c", log), ""),
        Workload(
            "gawk",
            [
                str(tp / "gawk"),
                "{n[$1]++; b[$4]+=$6; u[$9]=$2; s[$5]+=$7} "
                "END {for (k in n) t+=n[k]; print t, length(b), length(u), length(s)}",
                log,
            ],
            "",
        ),
        Workload(
            "jq",
            [
                str(tp / "jq"),
                "-c",
                "group_by(.kind) | map({kind: .[0].kind, n: length, "
                "v: (map(.value) | add), tags: ([.[].tags[]] | unique)})",
                js,
            ],
            "",
        ),
        Workload(
            "sort",
            [
                str(tp / "sort"),
                "-k5,5n",
                "-k1,1",
                "-S",
                "256M",
                "--parallel=1",
                "-o",
                "/dev/null",
                log,
            ],
            "",
        ),
        Workload("ninja", [str(tp / "ninja"), "-C", str(data), "-n", "-j1"], ""),
        Workload("lua", [str(tp / "lua"), str(data / "tables.lua")], ""),
        Workload("redis-kv", ["/bin/sh", str(data / "redis-kv.sh"), str(tp)], ""),
    ]
    out = [Workload(w.app, w.command, "thirdparty") for w in third]
    for script in ("pandas_join", "sparse_cg", "sklearn_neighbors", "lightgbm_train"):
        out.append(Workload(script, [py, str(py_dir / f"{script}.py")], "pypi"))
    out += [graph_workload(bins, kernel, gen, scale) for kernel, gen, scale in CORPUS_GRAPHS]
    for name, args in MICRO.items():
        out.append(Workload(name, [str(bins / name), *args], "micro"))
    out.append(
        Workload(
            "embedding-py",
            [py, str(py_dir / "embedding.py"), "--scale", "0.25", "--batches", "60"],
            "python",
        )
    )
    out.append(Workload("kvlog", [str(bins / "kvlog")], "app"))
    return out


#: One graph kernel per application in the corpus: (kernel, generator, scale).
CORPUS_GRAPHS = (
    ("bfs", "kron", 18),
    ("pr", "kron", 18),
    ("cc", "uniform", 18),
    ("sssp", "kron", 17),
    ("bc", "uniform", 17),
    ("tc", "kron", 16),
)
