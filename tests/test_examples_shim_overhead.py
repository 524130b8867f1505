"""The shim overhead benchmark runs end to end on a tiny PageRank and writes its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "shim_overhead.py"


@pytest.mark.slow
def test_benchmark_writes_medians_ratios_and_measured_sampling(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--scale", "15", "--repeats", "1", "--out-dir", tmp_path],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tmp_path / "shim_overhead.json").read_text())
    rows = {r["config"]: r for r in doc["rows"]}
    assert list(rows) == [
        "native",
        "shim, sampling off",
        "shim, default",
        "shim, ~1% sampled/s",
        "shim, ~10% sampled/s",
        "shim, period 50 ms",
        "shim, period 2 ms",
    ]
    assert doc["output_identical"] == "yes"  # the shim never changes PageRank's answer
    assert rows["native"]["ratio"] == 1.0
    assert all(r["wall_median_s"] > 0 for r in rows.values())
    # sampling shares are measured from the shim's logs: off is 0, on is not
    assert rows["shim, sampling off"]["sampled_share_per_second"] == 0
    assert rows["shim, default"]["sampled_share_per_second"] > 0
    assert rows["shim, default"]["objects_logged"] >= 5  # edge list, CSR, scores, contrib
    assert "| shim, default | defaults |" in (tmp_path / "shim_overhead.md").read_text()
