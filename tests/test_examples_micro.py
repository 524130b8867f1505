"""The memory microbenchmarks run, report what they touched, and are reproducible: the
emulator is calibrated against them, so their counts must mean what the docs say."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _bin(name: str) -> Path:
    mod_name = "_placer_examples_build"
    if mod_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(mod_name, REPO / "examples" / "build.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        spec.loader.exec_module(module)
    return sys.modules[mod_name].examples_bin(name)  # type: ignore[no-any-return]


def run(name: str, *args: str) -> dict[str, str]:
    done = subprocess.run([_bin(name), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith(f"{name}: "), line
    return dict(re.findall(r"(\w+)=(\S+)", line))


@pytest.mark.parametrize(
    ("name", "iters", "accesses", "touched", "reads", "writes"),
    [
        # 1 MiB = 16384 cache-line nodes / 131072 words
        ("chase", "50000", 50000, 50000 * 64, "1", "0"),
        ("seqread", "3", 3 * 131072, 3 * 2**20, "1", "0"),
        ("seqwrite", "3", 3 * 131072, 3 * 2**20, "0", "1"),
        ("randupdate", "50000", 50000, 50000 * 8, "1", "1"),
    ],
)
def test_microbenchmark_reports_its_accesses(
    name: str, iters: str, accesses: int, touched: int, reads: str, writes: str
) -> None:
    info = run(name, "-m", "1M", "-i", iters, "-t", "1")
    assert int(info["bytes"]) == 2**20
    assert int(info["accesses"]) == accesses
    assert int(info["bytes_touched"]) == touched
    assert (info["reads_per_access"], info["writes_per_access"]) == (reads, writes)
    assert float(info["time_s"]) > 0 and float(info["ns_per_access"]) > 0


@pytest.mark.parametrize("name", ["chase", "seqread", "seqwrite", "randupdate"])
def test_checksums_are_reproducible_per_seed(name: str) -> None:
    args = ("-m", "256K", "-i", "2000", "-t", "1")
    a, b = run(name, *args, "-s", "5"), run(name, *args, "-s", "5")
    assert a["checksum"] == b["checksum"]
    if name != "seqwrite":  # its values depend on the seed only through an offset
        assert run(name, *args, "-s", "6")["checksum"] != a["checksum"]


def test_pointer_chase_visits_every_node_in_one_cycle() -> None:
    # Sattolo's permutation is one cycle over all 4096 nodes of 256 KiB: after exactly
    # 4096 dependent loads the chase is back at node 0, and not before.
    assert int(run("chase", "-m", "256K", "-i", "4096")["checksum"], 16) == 0
    for steps in ("1", "2048", "4095"):
        assert int(run("chase", "-m", "256K", "-i", steps)["checksum"], 16) != 0


def test_random_update_is_deterministic_with_two_threads() -> None:
    args = ("-m", "1M", "-i", "100000", "-t", "2")
    assert run("randupdate", *args)["checksum"] == run("randupdate", *args)["checksum"]


@pytest.mark.parametrize("size", ["1k", "64Q", "-5M", "2T"])
def test_bad_sizes_are_rejected(size: str) -> None:
    done = subprocess.run([_bin("seqread"), "-m", size], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("seqread: error: -m expects a size")
