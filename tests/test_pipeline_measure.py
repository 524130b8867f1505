"""measure(): throughput and stats of one config, hard timeout, errors reported not raised."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from placer.collectors.pipeline.adapters import pipeline_def
from placer.collectors.pipeline.measure import batch_samples, host_facts, measure
from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from placer.errors import InvalidInputError


def source(i: int) -> np.ndarray:
    return np.full(4, i, dtype=np.float32)


def hang_after_ten(x: np.ndarray) -> np.ndarray:
    if x[0] >= 10:
        time.sleep(3600)
    return x


def explode(x: np.ndarray) -> np.ndarray:
    raise ValueError("corrupt record")


def collate(batch: list[np.ndarray]) -> np.ndarray:
    return np.stack(batch)


def spec_with(stage: StageSpec, n: int = 200) -> PipelineSpec:
    return PipelineSpec(
        "t",
        lambda: list(range(n)),
        [StageSpec("read", source, kind="source"), stage, StageSpec("collate", collate, "collate")],
        batch_size=8,
    )


def test_measures_throughput_and_stage_stats() -> None:
    defn = pipeline_def(spec_with(StageSpec("double", lambda x: x * 2)), "python")
    m = measure(defn, defn.naive_config, max_batches=10, max_seconds=5.0, warmup_batches=1)
    assert m.status == "ok" and m.error is None
    assert (m.batches, m.samples) == (10, 80)
    assert m.samples_per_second == pytest.approx(80 / m.wall_seconds)
    stats = {s.name: s for s in m.stages}
    assert [s.name for s in m.stages] == ["read", "double", "batch", "collate"]
    assert stats["collate"].elements_out == 10  # warmup batch not counted
    assert stats["double"].parallelism == 1
    assert m.host.cores >= 1 and m.peak_rss_bytes > 0
    assert 0 < m.process_cpu_seconds and m.consumer_wait_seconds <= m.wall_seconds


def test_epochs_repeat_until_the_batch_budget() -> None:
    defn = pipeline_def(spec_with(StageSpec("id", lambda x: x), n=16), "python")  # 2 batches/epoch
    m = measure(defn, {}, max_batches=7, max_seconds=5.0, warmup_batches=0)
    assert (m.status, m.batches, m.samples) == ("ok", 7, 56)


def test_hanging_stage_times_out_and_names_the_stage() -> None:
    defn = pipeline_def(spec_with(StageSpec("stuck", hang_after_ten)), "python")
    t0 = time.monotonic()
    m = measure(defn, {}, max_batches=50, max_seconds=0.5, timeout=2.0)
    assert time.monotonic() - t0 < 10
    assert m.status == "timeout"
    assert m.error is not None and "timeout after 2.0s" in m.error and "stuck" in m.error
    assert m.samples_per_second == 0.0


def test_raising_stage_is_an_error_result() -> None:
    defn = pipeline_def(spec_with(StageSpec("parse", explode)), "python")
    m = measure(defn, {}, max_batches=5, max_seconds=1.0)
    assert m.status == "error"
    assert m.error is not None and m.error.startswith("ValueError: corrupt record")


def test_bad_config_is_an_error_result_naming_the_key() -> None:
    defn = pipeline_def(spec_with(StageSpec("id", lambda x: x)), "python")
    m = measure(defn, {"parallelism.nope": 2}, max_batches=5, max_seconds=1.0)
    assert m.status == "error" and "parallelism.nope" in (m.error or "")


def test_bad_arguments_raise() -> None:
    defn = pipeline_def(spec_with(StageSpec("id", lambda x: x)), "python")
    with pytest.raises(InvalidInputError):
        measure(defn, {}, max_batches=0, max_seconds=1.0)
    with pytest.raises(InvalidInputError):
        measure(defn, {}, max_batches=1, max_seconds=1.0, isolation="thread")


def _descendants() -> set[int]:
    """PIDs of live (non-zombie) processes below this one, from /proc."""
    parent: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parent[int(d)] = int(fields[1])
    out: set[int] = set()
    frontier = {os.getpid()}
    while frontier:
        frontier = {pid for pid, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def test_dataloader_timeout_kills_worker_processes() -> None:
    pytest.importorskip("torch")
    defn = pipeline_def(spec_with(StageSpec("stuck", hang_after_ten)), "dataloader")
    before = _descendants()
    m = measure(defn, {"num_workers": 2}, max_batches=50, max_seconds=0.5, timeout=4.0)
    assert m.status == "timeout"
    time.sleep(0.5)
    assert _descendants() - before == set()


def test_batch_samples_conventions() -> None:
    assert batch_samples({"num_samples": 5, "x": np.zeros((9, 2))}, 1) == 5
    assert batch_samples({"x": np.zeros((9, 2))}, 1) == 9
    assert batch_samples((np.zeros((3, 2)), np.zeros(3)), 1) == 3
    assert batch_samples("opaque", 7) == 7


def test_host_facts_reads_the_source(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "data.bin"
    f.write_bytes(b"\0" * (4 << 20))
    facts = host_facts(str(f))
    assert facts.cores >= 1 and facts.free_memory_bytes > 0
    assert facts.source_read_bytes_per_second and facts.source_read_bytes_per_second > 1e6
    assert host_facts(None).source_read_bytes_per_second is None
    with pytest.raises(InvalidInputError):
        host_facts(str(tmp_path / "missing"))


def slow_source(i: int) -> np.ndarray:
    time.sleep(0.004)  # 8 records per batch: 32 ms of work per batch
    return np.full(1024, i, dtype=np.float64)  # 8 KiB per record, 64 KiB per batch


def test_cached_config_reports_first_epoch_and_cached_epochs_materialized() -> None:
    spec = PipelineSpec(
        "cached",
        lambda: list(range(64)),  # 8 batches per epoch
        [StageSpec("read", slow_source, kind="source"), StageSpec("collate", collate, "collate")],
        batch_size=8,
    )
    defn = pipeline_def(spec, "python")
    config = {**defn.naive_config, "cache": "collate"}
    m = measure(defn, config, max_batches=100_000, max_seconds=0.05, min_epochs=2)
    assert m.status == "ok", m.error
    assert m.epochs_completed >= 2  # ran past max_seconds until two epochs were complete
    first, steady = m.first_epoch_samples_per_second, m.steady_samples_per_second
    assert first is not None and steady is not None
    assert first < 64 / (8 * 0.004)  # every record read in the first epoch (start-up too)
    assert steady > 5 * first  # later epochs replay the cache
    # the consumer copied every counted batch: 64 KiB each, and that took time
    assert m.bytes_consumed == m.batches * 8 * 1024 * 8
    assert m.consumer_seconds > 0
    best = m.consumer_best_seconds_per_batch
    assert best is not None and 0 < best <= m.consumer_seconds  # re-copies not counted
    # without min_epochs a short window stops inside the first epoch: no epoch rates
    m = measure(defn, config, max_batches=3, max_seconds=5.0)
    assert m.epochs_completed == 0
    assert m.first_epoch_samples_per_second is None and m.steady_samples_per_second is None
    # materialize=False: nothing copied
    m = measure(defn, config, max_batches=3, max_seconds=5.0, materialize=False)
    assert m.bytes_consumed == 0 and m.consumer_seconds == 0


def test_consumer_copies_every_kind_of_leaf() -> None:
    from placer.collectors.pipeline.measure import Consumer

    torch = pytest.importorskip("torch")
    c = Consumer()
    batch = {
        "x": np.zeros((4, 8), dtype=np.float32),  # 128
        "y": torch.ones(16, dtype=torch.int64),  # 128
        "ids": [1, 2, 3, 4],  # 4 int64: 32
        "raw": b"abcdefgh",  # 8
        "text": ["ab", "cde"],  # 5
        "num_samples": 4,  # 8
    }
    c(batch)
    assert c.bytes == 128 + 128 + 32 + 8 + 5 + 8
    big = np.ones(3 << 20, dtype=np.uint8)  # larger than the initial buffer
    c(big)
    assert c.bytes == 309 + (3 << 20)
