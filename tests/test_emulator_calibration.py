"""The emulator against published Optane ratios, on recorded microbenchmark runs.

``benchmarks/emulator_validation.py --record`` profiled the four example microbenchmarks
(pointer chase, sequential read, sequential write, random update) with the real
collectors and a DHAT pass, on one measured host model, and kept the inputs in
``tests/data/emulator/validation.json``. Re-emulating them here checks the emulator on
fixed inputs: it cannot fail because the machine running the tests is busy. The live
comparison, on this host and today, is the benchmark's (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.contracts.host import HostModel
from placer.emulator.host import from_model
from placer.emulator.model import RunProfile
from placer.experiments.calibration import compare
from placer.tiers.specs import load_spec

RECORDED = Path(__file__).parent / "data" / "emulator" / "validation.json"
LIMIT = 0.20
#: Benchmarks the emulator misses by more than LIMIT on the recorded runs, with why
#: (docs/benchmarks.md, "Emulator validation"). A miss that starts to land fails the test,
#: so this list is kept true.
#: Empty since random writes follow random reads (docs/emulator.md, "Random writes"):
#: randupdate was -24% on Optane with one random share for reads and writes.
KNOWN_MISSES: dict[str, str] = {}


def _recorded() -> tuple[dict, list[dict]]:
    doc = json.loads(RECORDED.read_text())
    return doc["meta"], doc["benchmarks"]


@pytest.mark.parametrize("tier", ["optane", "cxl"])
def test_recorded_microbenchmarks_land_within_20_percent_of_the_published_ratios(
    tier: str,
) -> None:
    meta, benches = _recorded()
    host = from_model(0, HostModel.from_dict(meta["host_model"]))
    spec, ref = load_spec(tier), load_spec("dram")
    assert [b["bench"] for b in benches] == ["chase", "seqread", "seqwrite", "randupdate"]
    rows = []
    for b in benches:
        profile = RunProfile.from_dict(b["profile"])
        row = compare(b["bench"], b["report"], profile, host, spec, ref)
        again = compare(
            b["bench"], b["report"], RunProfile.from_dict(b["profile"]), host, spec, ref
        )
        assert (again.emulated, again.implied) == (row.emulated, row.implied)  # pure
        assert row.implied > 1.2  # the loops dominate: the comparison has teeth
        assert row.phases and all(p.seconds >= 0 for p in row.phases)
        rows.append(row)
    report = "; ".join(
        f"{r.bench}: emulated {r.emulated:.2f}x vs implied {r.implied:.2f}x ({r.error:+.0%})"
        for r in rows
    )
    for r in rows:
        if r.bench in KNOWN_MISSES and tier == "optane":
            assert abs(r.error) > LIMIT, f"{r.bench} now lands: update KNOWN_MISSES. {report}"
        else:
            assert abs(r.error) <= LIMIT, report
