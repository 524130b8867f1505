"""The shim's CPU-time timeline (CLOCK records) and CPU-time sampling intervals.

Emulated labels are priced on the program's CPU time (docs/emulator.md, "Time base"):
the shim writes CLOCK records (monotonic time -> process CPU time) and, by default, ends
a page-poison interval after every period of the process's CPU time, so a program that
waits (or is held off the cores by other load) does not get more intervals for the same
work. ``PLACER_SHIM_SAMPLE_CLOCK=wall`` keeps wall-time intervals.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from placer.collectors.shim.library import shim_path
from placer.collectors.shim.log import cpu_ns_at
from tests.test_shim_runtime import only_log, run

# 8 MiB sampled while the program sleeps 0.4 s (no CPU), then touches it for ~60 ms of CPU
PROGRAM = """
import time
b = bytearray(8 << 20)
time.sleep(0.4)
t = time.process_time()
while time.process_time() - t < 0.06:
    for i in range(0, len(b), 4096):
        b[i] = (b[i] + 1) & 0xFF
"""


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_intervals_count_cpu_time_unless_told_wall(tmp_path: Path, clock: str) -> None:
    pattern = tmp_path / "shim.%p.log"
    extra = {"PLACER_SHIM_SAMPLE_PERIOD_MS": "10", "PLACER_SHIM_SAMPLE_CLOCK": clock}
    res = run([sys.executable, "-c", PROGRAM], str(shim_path()), pattern, extra)
    assert res.returncode == 0, res.stderr
    log = only_log(pattern)
    assert log.samples, "the 8 MiB buffer was never sampled"
    last = max(s.interval for s in log.samples)
    cpu_s = (log.clocks[-1][1] - log.clocks[0][1]) / 1e9
    if clock == "cpu":
        assert log.header.flags & 4
        # numbered by CPU time: the 0.4 s sleep adds no interval
        assert last <= cpu_s / 0.010 + 1
        assert last < 40
    else:
        assert not log.header.flags & 4
        assert last >= 40  # the sleep alone spans 40 wall-time periods


def test_clock_timeline_is_monotone_and_spans_the_run(tmp_path: Path) -> None:
    pattern = tmp_path / "shim.%p.log"
    res = run([sys.executable, "-c", PROGRAM], str(shim_path()), pattern)
    assert res.returncode == 0, res.stderr
    log = only_log(pattern)
    assert len(log.clocks) >= 3  # start, intervals, END
    assert log.clocks[0][0] == log.header.start_ns
    assert log.end is not None and log.clocks[-1][0] <= log.end.time_ns
    times = [c[0] for c in log.clocks]
    cpus = [c[1] for c in log.clocks]
    assert times == sorted(times) and cpus == sorted(cpus)
    # the sleep costs wall time but no CPU time
    wall_s = (times[-1] - times[0]) / 1e9
    assert wall_s >= 0.4 and (cpus[-1] - cpus[0]) / 1e9 < wall_s
    # interpolation: held flat beyond the ends, exact at the points
    at = cpu_ns_at(log.clocks, [times[0] - 10, times[1], times[-1] + 10])
    assert at == [cpus[0], cpus[1], cpus[-1]]
    assert cpu_ns_at(log.clocks[:1], [times[0]]) is None
