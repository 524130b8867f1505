"""Probes count elements and time stages correctly, across threads and engines."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from placer.collectors.pipeline.adapters import pipeline_def
from placer.collectors.pipeline.probe import Probes, estimate_bytes
from placer.collectors.pipeline.spec import PipelineSpec, StageSpec

BURN_S = 0.002
SLEEP_S = 0.002


def source(i: int) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


def burn(x: np.ndarray) -> np.ndarray:
    end = time.thread_time() + BURN_S
    while time.thread_time() < end:
        pass
    return x * 2


def nap(x: np.ndarray) -> np.ndarray:
    time.sleep(SLEEP_S)
    return x + 1


def collate(batch: list[np.ndarray]) -> np.ndarray:
    return np.stack(batch)


def synthetic(n: int = 50, batch: int = 8) -> PipelineSpec:
    return PipelineSpec(
        "synthetic",
        lambda: list(range(n)),
        [
            StageSpec("read", source, kind="source"),
            StageSpec("burn", burn),
            StageSpec("nap", nap),
            StageSpec("collate", collate, kind="collate"),
        ],
        batch_size=batch,
    )


def by_name(probes: Probes) -> dict:
    return {s.name: s for s in probes.stats()}


@pytest.mark.parametrize(
    "config", [{}, {"parallelism.nap": 3, "parallelism.burn": 2, "prefetch": 2}]
)
def test_counts_and_cpu_vs_wall_on_python_engine(config: dict) -> None:
    n = 50
    defn = pipeline_def(synthetic(n), "python")
    probes = Probes()
    batches = list(defn.build(config, probes))
    assert [len(b) for b in batches] == [8] * 6 + [2]
    assert batches[1][0, 0] == 8 * 2 + 1  # read → burn → nap applied in order
    s = by_name(probes)
    for name in ("read", "burn", "nap"):
        assert (s[name].elements_in, s[name].elements_out) == (n, n)
    assert (s["batch"].elements_in, s["batch"].elements_out) == (n, 7)
    assert (s["collate"].elements_in, s["collate"].elements_out) == (7, 7)
    # a CPU-burning stage: thread CPU time is what it burned, and wall is at least that
    assert s["burn"].cpu_seconds >= 0.9 * n * BURN_S
    assert s["burn"].wall_seconds >= s["burn"].cpu_seconds
    # a sleeping stage: wall covers the sleeps, CPU is a small part of it
    assert s["nap"].wall_seconds >= n * SLEEP_S
    assert s["nap"].cpu_seconds < 0.3 * s["nap"].wall_seconds
    assert s["collate"].bytes_out == n * 4 * 4  # float32 x 4 per element, stacked
    assert s["batch"].wait_seconds > 0  # batching waits on the maps upstream


def test_wrap_counts_exactly_from_many_threads() -> None:
    probes = Probes()
    fn = probes.wrap("square", lambda x: x * x)

    def work() -> None:
        for i in range(500):
            fn(i)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (stats,) = probes.stats()
    assert stats.elements_in == stats.elements_out == 4000


def test_stats_window_subtracts_the_earlier_snapshot() -> None:
    probes = Probes()
    items = list(probes.iterate("read", [b"abc", b"defg"]))
    since = probes.snapshot()
    fn = probes.wrap("read", bytes)
    fn(b"xyz12")
    (window,) = probes.stats(since=since)
    assert items == [b"abc", b"defg"]
    assert (window.elements_out, window.bytes_out) == (1, 5)
    (total,) = probes.stats()
    assert (total.elements_out, total.bytes_out) == (3, 12)


def test_estimate_bytes_of_common_outputs() -> None:
    assert estimate_bytes(np.zeros((3, 5), dtype=np.float64)) == 120
    assert estimate_bytes(b"12345") == 5
    assert estimate_bytes({"a": np.zeros(4, dtype=np.int8), "n": 3}) == 4
    assert estimate_bytes([np.zeros(2, np.int32)] * 3) == 24
    assert estimate_bytes(object()) == 0


def test_dataloader_workers_report_back_to_the_parent() -> None:
    pytest.importorskip("torch")
    n = 40
    defn = pipeline_def(synthetic(n), "dataloader")
    probes = Probes()
    pipe = defn.build({"num_workers": 2}, probes)
    for _ in range(2):  # two epochs: fresh (non-persistent) workers keep adding up
        batches = list(pipe)
        assert sum(len(b) for b in batches) == n
    s = by_name(probes)
    for name in ("read", "burn", "nap"):
        assert s[name].elements_out == 2 * n, name
    assert s["collate"].elements_out == 2 * 5
    assert s["burn"].cpu_seconds >= 0.9 * 2 * n * BURN_S


def test_torchdata_nodes_per_stage_parallelism_and_cache() -> None:
    pytest.importorskip("torchdata.nodes")
    n = 40
    defn = pipeline_def(synthetic(n), "torchdata")
    naive = [b.tolist() for b in defn.build(defn.naive_config, None)]
    probes = Probes()
    pipe = defn.build({"parallelism.nap": 4, "prefetch": 2, "cache": "burn"}, probes)
    first = [b.tolist() for b in pipe]
    second = [b.tolist() for b in pipe]
    assert first == naive == second  # in order, same values, cached epoch identical
    s = by_name(probes)
    assert s["burn"].elements_out == n  # the second epoch came from the cache
    assert s["nap"].elements_out == 2 * n
    assert s["nap"].wait_seconds >= 0 and s["batch"].elements_out == 2 * 5


def test_short_calls_sample_the_cpu_clock_and_estimate_cpu() -> None:
    """Calls under 2 ms read the thread CPU clock 1 in 8 times; the estimate still holds."""
    probes = Probes()
    spin = probes.wrap("spin", lambda _: burn_for(0.0002))
    nap_short = probes.wrap("nap", lambda _: time.sleep(0.0002))
    for i in range(400):
        spin(i)
        nap_short(i)
    s = by_name(probes)
    assert s["spin"].elements_out == 400
    assert 0.7 * 400 * 0.0002 <= s["spin"].cpu_seconds <= s["spin"].wall_seconds * 1.01
    assert s["nap"].cpu_seconds < 0.5 * s["nap"].wall_seconds


def burn_for(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
