"""The Python embedding workload is reproducible per seed and rejects bad arguments."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "python" / "embedding.py"
SMALL = ("--scale", "0.005", "--batches", "12", "--batch-size", "64", "--update-every", "3")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120
    )


def fields(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"(\w+)=(\S+)", done.stdout))


def test_same_seed_same_checksum_other_seed_differs() -> None:
    a, b, c = (fields(run(*SMALL, "--seed", s)) for s in ("3", "3", "4"))
    assert a["checksum"] == b["checksum"]
    assert a["checksum"] != c["checksum"]
    assert a["tables"] == "4"
    assert a["updates"] == "4"  # 12 batches, a gradient step every 3
    assert int(a["lookups"]) == 12 * 64 * 8 * 4


def test_updates_change_the_tables() -> None:
    frequent = fields(run(*SMALL[:-1], "1"))
    never = fields(run(*SMALL[:-1], "1000"))
    assert never["updates"] == "0" and frequent["updates"] == "12"
    assert frequent["checksum"] != never["checksum"]


def test_zipf_lookups_are_skewed() -> None:
    """The hot rows must really be hot: the workload exists to have skewed access."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import numpy as np
        from embedding import lookup_rows, zipf_cdf
    finally:
        sys.path.pop(0)
    rows = lookup_rows(np.random.default_rng(0), zipf_cdf(100_000, 1.05), 200_000)
    counts = np.sort(np.bincount(rows, minlength=100_000))[::-1]
    assert rows.min() >= 0 and rows.max() < 100_000
    assert counts[:100].sum() > 0.3 * rows.size  # top 0.1% of rows take >30% of lookups
    assert (counts == 0).sum() > 50_000  # most rows are cold


def test_bad_arguments_exit_2_with_one_message() -> None:
    for bad in (("--scale", "0"), ("--batches", "0"), ("--zipf", "-1")):
        done = run(*bad)
        assert done.returncode == 2
        assert "error:" in done.stderr.strip().splitlines()[-1]
