"""The GIL term: measuring a stage's GIL share, and the analysis's bound with it.

The measurement tests run real threads on this (shared, 2-core) host, so their margins
are wide: pure Python must come out above 0.6, code that releases the GIL below 0.4.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
from typing import Any

import pytest

from placer.collectors.pipeline.probe import Probes, _run_delay_ns, gil_share, side_effects
from placer.contracts.pipeline import (
    ChoiceKnob,
    HostFacts,
    IntKnob,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
)
from placer.tuners.analysis import analyze
from placer.tuners.configs import config_from_analysis, predicted_rate
from placer.tuners.study import analysis_from_dict

GIB = 1024**3

needs_schedstat = pytest.mark.skipif(
    _run_delay_ns() is None, reason="needs /proc/thread-self/schedstat (Linux)"
)


def _python_work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


_BUF = b"\x01" * (1 << 20)


def _hash_work(_: int) -> bytes:
    return hashlib.sha256(_BUF).digest()  # releases the GIL for buffers > 2 KiB


def _sleep_work(_: int) -> None:
    time.sleep(0.001)


# --------------------------------------------------------------------------- measuring


@needs_schedstat
def test_pure_python_holds_the_gil() -> None:
    g = gil_share(_python_work, [((20_000,), {})] * 8, repeats=5)
    assert g is not None and g > 0.6


@needs_schedstat
@pytest.mark.parametrize("fn", [_hash_work, _sleep_work])
def test_code_that_releases_the_gil_does_not(fn: Any) -> None:
    g = gil_share(fn, [((0,), {})] * 8, repeats=5)
    assert g is not None and g < 0.4


def test_unknown_when_it_cannot_be_measured() -> None:
    assert gil_share(_python_work, [((10,), {})]) is None  # one input: nothing to split

    def broken(x: int) -> int:
        raise ValueError(x)

    assert gil_share(broken, [((1,), {})] * 4) is None
    slow = gil_share(_sleep_work, [((0,), {})] * 4, max_call_seconds=1e-6)
    assert slow is None


def test_probe_keeps_a_sample_of_inputs_only_while_asked() -> None:
    probes = Probes(["decode", "write"])
    decode = probes.wrap("decode", _python_work)
    write = probes.wrap("write", side_effects(lambda x: x))
    for i in range(5):
        decode(i)
    assert probes.kept_inputs("decode") is None  # not keeping yet
    probes.keep_inputs(4)
    for i in range(100, 300):
        decode(i)
        write(i)
    probes.keep_inputs(0)
    decode(999)
    kept = probes.kept_inputs("decode")
    assert kept is not None
    fn, inputs = kept
    assert fn is _python_work
    assert len(inputs) == 4
    assert all(100 <= args[0] < 300 and kw == {} for args, kw in inputs)
    assert probes.kept_inputs("write") is None  # side effects: never replayed
    # the counters are unaffected by keeping
    assert probes.stats()[0].elements_out == 5 + 200 + 1


@needs_schedstat
def test_measure_records_gil_shares_for_thread_engines() -> None:
    from placer.collectors.pipeline.adapters import pipeline_def
    from placer.collectors.pipeline.measure import measure
    from placer.collectors.pipeline.spec import PipelineSpec, StageSpec

    spec = PipelineSpec(
        name="gil",
        items=lambda: list(range(64)),
        stages=[
            StageSpec("read", lambda i: 3000 + i, kind="source", parallel=False),
            StageSpec("python", _python_work),
            StageSpec("hash", _hash_work),
            StageSpec("collate", lambda xs: list(xs), kind="collate", parallel=False),
        ],
        batch_size=8,
    )
    defn = pipeline_def(spec, "python")
    m = measure(defn, dict(defn.naive_config), max_batches=1000, max_seconds=0.5)
    assert m.status == "ok", m.error
    by = {s.name: s for s in m.stages}
    assert by["python"].gil_share is not None and by["python"].gil_share > 0.6
    assert by["hash"].gil_share is not None and by["hash"].gil_share < 0.4
    assert by["batch"].gil_share is None  # not a function stage
    assert m.consumer_gil_share is not None
    assert 0 < m.gil_check_seconds < 10
    # trials (not the naive config) and explicit opt-out skip the check
    m2 = measure(defn, {"parallelism.python": 2}, max_batches=1000, max_seconds=0.3)
    assert all(s.gil_share is None for s in m2.stages) and m2.consumer_gil_share is None


# --------------------------------------------------------------------------- the LP

# 100 batches; two parallel thread stages: a 0.01 CPU-s/batch, b 0.03 CPU-s/batch
STAGES = [
    StageInfo("a", parallelism_knob="parallelism.a"),
    StageInfo("b", parallelism_knob="parallelism.b"),
]


def _defn() -> PipelineDef:
    return PipelineDef(
        name="threads",
        engine="torchdata",
        stages=STAGES,
        knobs={
            "parallelism.a": IntKnob(1, 8),
            "parallelism.b": IntKnob(1, 8),
            "prefetch": IntKnob(0, 16),
            "cache": ChoiceKnob((None,)),
        },
        build=lambda config, probes: [],
        batch_size=10,
        naive_config={"parallelism.a": 1, "parallelism.b": 1, "prefetch": 0, "cache": None},
        dataset_samples=10_000,
    )


def _measurement(g_a: float | None, g_b: float | None) -> Measurement:
    stats = [
        StageStats("a", 1000, 1000, 1.0, 1.0, 0, 0.0, 0.0, 1, gil_share=g_a),
        StageStats("b", 1000, 1000, 3.0, 3.0, 0, 0.0, 0.0, 1, gil_share=g_b),
    ]
    return Measurement(
        config={},
        samples_per_second=1000 / 4.0,
        batches=100,
        samples=1000,
        wall_seconds=4.0,
        stages=stats,
        host=HostFacts(cores=4, free_memory_bytes=16 * GIB),
    )


def _old_measurement() -> Measurement:
    """A measurement as stored before the GIL term: positional stats, no shares."""
    stats = [
        StageStats("a", 1000, 1000, 1.0, 1.0, 0, 0.0, 0.0, 1),
        StageStats("b", 1000, 1000, 3.0, 3.0, 0, 0.0, 0.0, 1),
    ]
    return Measurement({}, 250.0, 100, 1000, 4.0, stats, HostFacts(4, 16 * GIB))


def test_gil_caps_two_thread_stages_at_one_core() -> None:
    # 4 cores: without the GIL, 4 / 0.04 CPU-s = 100 batches/s; with g = 1 one
    # interpreter runs 1 / (0.01 + 0.03) = 25 batches/s = 250 samples/s
    a = analyze(_defn(), _measurement(1.0, 1.0), budget_cores=4, budget_memory_bytes=GIB)
    assert a.upper_bound_samples_per_second == pytest.approx(250, rel=1e-6)
    assert a.lp_bottleneck == "gil"
    assert a.upper_bound_without_gil == pytest.approx(1000, rel=1e-6)
    assert a.gil_bound_samples_per_second == pytest.approx(250, rel=1e-6)
    line = next(x for x in a.explanation if "GIL" in x)
    assert "the GIL binds: 100% of b's CPU holds it, 100% of a's CPU holds it" in line
    # the integer workers follow the lower bound: 25 batches/s needs 1 a, 1 b (of 8)
    config = config_from_analysis(_defn(), a)
    assert config["parallelism.a"] == 1 and config["parallelism.b"] == 1
    assert predicted_rate(_defn(), a, {"parallelism.a": 8, "parallelism.b": 8}, cached=False) == (
        pytest.approx(25, rel=1e-6)
    )


def test_partial_share_and_no_share() -> None:
    half = analyze(_defn(), _measurement(0.5, 0.5), budget_cores=4, budget_memory_bytes=GIB)
    assert half.upper_bound_samples_per_second == pytest.approx(500, rel=1e-6)
    zero = analyze(_defn(), _measurement(0.0, 0.0), budget_cores=4, budget_memory_bytes=GIB)
    old = analyze(_defn(), _old_measurement(), budget_cores=4, budget_memory_bytes=GIB)
    assert zero.upper_bound_samples_per_second == pytest.approx(1000, rel=1e-6)
    assert zero.lp_bottleneck != "gil" and zero.gil_bound_samples_per_second is None
    assert zero.upper_bound_without_gil is None
    assert not any("GIL" in x for x in zero.explanation)
    # old measurements (no shares) analyze exactly as before the GIL term existed
    assert old.to_dict() == zero.to_dict() | {
        "stages": [s | {"gil_share": None} for s in zero.to_dict()["stages"]]
    }


def test_consumer_in_the_interpreter_counts() -> None:
    m = dataclasses.replace(
        _measurement(1.0, 0.0), consumer_seconds=1.0, consumer_gil_share=1.0
    )  # 0.01 s/batch copy
    a = analyze(_defn(), m, budget_cores=4, budget_memory_bytes=GIB)
    # GIL: 0.01 (a) + 0.01 (consumer) per batch -> 50 batches/s
    assert a.upper_bound_samples_per_second == pytest.approx(500, rel=1e-6)
    assert "of the consumer's CPU holds it" in " ".join(a.explanation)


def test_old_stored_analysis_loads() -> None:
    a = analyze(_defn(), _old_measurement(), budget_cores=4, budget_memory_bytes=GIB)
    doc = a.to_dict()
    for key in ("consumer_gil_share", "gil_bound_samples_per_second", "upper_bound_without_gil"):
        doc.pop(key)
    doc["stages"] = [{k: v for k, v in s.items() if k != "gil_share"} for s in doc["stages"]]
    back = analysis_from_dict(doc)
    assert back.stages[0].gil_share is None
    assert math.isclose(back.upper_bound_samples_per_second, a.upper_bound_samples_per_second)
    assert (
        predicted_rate(_defn(), back, {"parallelism.a": 8, "parallelism.b": 8}, cached=False) > 25
    )


# --------------------------------------------------------------------------- benchmark


def test_benchmark_final_runs_are_round_robin_and_shared() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "pipeline_tuning.py"
    loaded = importlib.util.spec_from_file_location("pipeline_tuning_bench", path)
    assert loaded is not None and loaded.loader is not None
    bench = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(bench)

    order: list[int] = []
    values = iter([10.0, 20.0, 30.0, 12.0, 22.0, 32.0, 11.0, 21.0, 31.0])

    def fake_measure(defn: PipelineDef, config: dict[str, Any], **kw: Any) -> Measurement:
        order.append(config["parallelism.a"])
        v = next(values)
        return Measurement(config, v, 10, 100, 1.0, [], HostFacts(2, GIB))

    defn = _defn()
    analysis = analyze(defn, _old_measurement(), budget_cores=4, budget_memory_bytes=GIB)
    cfg = {"parallelism.a": 1, "parallelism.b": 1, "prefetch": 0, "cache": None}
    entries = {
        "naive": (defn, dict(cfg)),
        "x": (defn, {**cfg, "parallelism.a": 2}),
        "y": (defn, {**cfg, "parallelism.a": 3}),
        "same as naive": (defn, dict(cfg)),
        "none": (defn, None),
    }
    final, _details, runs = bench.measure_finals(entries, fake_measure, 3, 0.1, analysis)
    assert order == [1, 2, 3, 1, 2, 3, 1, 2, 3]  # round robin, the shared config once a round
    assert final["naive"] == final["same as naive"] == 11.0  # median of 10, 12, 11
    assert final["x"] == 21.0 and final["y"] == 31.0 and final["none"] is None
    assert runs["naive"] == [10.0, 12.0, 11.0]
    assert bench.bound_violations(30.0, runs) == [
        {"method": "y", "samples_per_second": v, "upper_bound": 30.0} for v in (32.0, 31.0)
    ]
    assert bench.bound_violations(None, runs) == []
