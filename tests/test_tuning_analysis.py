"""The operational analysis on a recorded measurement (numbers worked out by hand)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from placer.contracts.pipeline import (
    ChoiceKnob,
    HostFacts,
    IntKnob,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
)
from placer.errors import InvalidInputError
from placer.tuners.analysis import DEFAULT_MEMORY_SHARE, analyze, default_memory_budget
from placer.tuners.configs import config_from_analysis, core_demand

GIB = 1024**3

# 100 batches of 32 samples measured with one worker per stage:
#   read   (sequential source) 0.32 s CPU, 0.40 s wall  -> 312.5 batches/CPU-s, 250/s per worker
#   decode                     3.20 s CPU               ->  31.25 batches/CPU-s
#   crop   (random)            0.64 s CPU               -> 156.25 batches/CPU-s
#   batch  (sequential)        0.05 s CPU               -> 2000 batches/CPU-s
STAGES = [
    StageInfo("read", kind="source", sequential=True),
    StageInfo("decode", parallelism_knob="parallelism.decode"),
    StageInfo("crop", random=True, parallelism_knob="parallelism.crop"),
    StageInfo("batch", kind="batch", sequential=True),
]
STATS = [
    StageStats("read", 3200, 3200, 0.40, 0.32, 3200 * 100_000, 0.0, 0.0, 1),
    StageStats("decode", 3200, 3200, 3.20, 3.20, 3200 * 600_000, 0.0, 0.0, 1),
    StageStats("crop", 3200, 3200, 0.64, 0.64, 3200 * 150_000, 0.0, 0.0, 1),
    StageStats("batch", 3200, 100, 0.05, 0.05, 0, 0.0, 0.0, 1),
]


def _defn(**over: object) -> PipelineDef:
    kw: dict[str, object] = dict(
        name="images",
        engine="torchdata",
        stages=STAGES,
        knobs={
            "parallelism.decode": IntKnob(1, 8),
            "parallelism.crop": IntKnob(1, 8),
            "prefetch": IntKnob(1, 16),
            "cache": ChoiceKnob((None, "read", "decode", "crop")),
        },
        build=lambda config, probes: [],
        batch_size=32,
        naive_config={"parallelism.decode": 1, "parallelism.crop": 1, "prefetch": 1, "cache": None},
        dataset_samples=10_000,
        materialized_bytes={"read": 1 * GIB, "decode": 6 * GIB, "crop": 1 * GIB},
    )
    kw.update(over)
    return PipelineDef(**kw)  # type: ignore[arg-type]


def _measurement(bandwidth: float | None = None) -> Measurement:
    return Measurement(
        config={},
        samples_per_second=3200 / 4.3,
        batches=100,
        samples=3200,
        wall_seconds=4.3,
        stages=STATS,
        host=HostFacts(cores=2, free_memory_bytes=16 * GIB, source_read_bytes_per_second=bandwidth),
        peak_rss_bytes=0,
    )


def test_rates_bottleneck_and_lp_bound() -> None:
    a = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=512 * 1024**2)
    decode = a.stage("decode")
    assert decode.visit_ratio == pytest.approx(32)
    assert decode.core_rate == pytest.approx(31.25)
    assert a.stage("read").worker_rate == pytest.approx(250)
    assert a.bottleneck == "decode"
    assert a.bottleneck_samples_per_core == pytest.approx(1000)
    # nothing fits 512 MiB: 2 cores over 0.0421 CPU-s per batch = 47.5 batches/s
    assert a.cache is None
    t = 2 / (0.0032 + 0.032 + 0.0064 + 0.0005)
    assert a.upper_bound_samples_per_second == pytest.approx(32 * t, rel=1e-4)
    assert sum(s.cores for s in a.stages) == pytest.approx(2, rel=1e-4)
    assert a.stage("decode").cores == pytest.approx(t / 31.25, rel=1e-4)
    assert "decode is the bottleneck at 1,000 samples/s per core" in a.explanation[0]
    assert "2 cores bound the pipeline at 1,520 samples/s" in a.explanation[1]


def test_sequential_stage_gets_at_most_one_core() -> None:
    stats = list(STATS)
    stats[0] = StageStats("read", 3200, 3200, 2.0, 2.0, 0, 0.0, 0.0, 1)  # 50 batches/CPU-s
    m = _measurement()
    m = Measurement(**{**m.__dict__, "stages": stats})
    a = analyze(_defn(), m, budget_cores=8, budget_memory_bytes=0)
    assert a.stage("read").cores <= 1 + 1e-9
    assert a.upper_bound_samples_per_second == pytest.approx(50 * 32, rel=1e-4)
    assert a.lp_bottleneck == "read"
    assert a.stage("read").parallelism == 1


def test_cache_goes_nearest_the_output_that_fits_never_at_a_random_stage() -> None:
    # 4 GiB: decode (6 GiB) does not fit, read (1 GiB) does; crop is random, never cached.
    a = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=4 * GIB)
    assert a.cache == "read"
    # steady state after the first epoch; the bound is the mean over a 10-epoch run
    assert a.upper_bound_steady == pytest.approx(32 * 2 / 0.0389, rel=1e-3)
    assert a.upper_bound_samples_per_second == pytest.approx(
        10 / (1 / a.upper_bound_no_cache + 9 / a.upper_bound_steady), rel=1e-9
    )
    assert a.upper_bound_no_cache < a.upper_bound_samples_per_second < a.upper_bound_steady
    a = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=8 * GIB)
    assert a.cache == "decode"
    assert a.cache_bytes == 6 * GIB
    assert "caching after decode" in " ".join(a.explanation)
    assert a.upper_bound_steady == pytest.approx(32 * 2 / 0.0069, rel=1e-3)
    # the baseline footprint counts against the budget too
    a = analyze(
        _defn(),
        _measurement(),
        budget_cores=2,
        budget_memory_bytes=8 * GIB,
        baseline_memory_bytes=3 * GIB,
    )
    assert a.cache == "read"


def test_source_bandwidth_bounds_the_pipeline() -> None:
    # 3.2 MB read per batch at 100 MB/s: 31.25 batches/s = 1000 samples/s (< 1520 of 2 cores)
    a = analyze(_defn(), _measurement(bandwidth=100e6), budget_cores=2, budget_memory_bytes=0)
    assert a.source_bound_samples_per_second == pytest.approx(1000)
    assert a.upper_bound_samples_per_second == pytest.approx(1000)
    assert a.lp_bottleneck == "source"
    assert "read bandwidth binds" in a.explanation[1]


def test_parallel_source_reads_one_stream_per_worker() -> None:
    # the probe measured one stream; a source with up to 4 workers reads 4 streams
    stages = [StageInfo("read", kind="source", parallelism_knob="parallelism.read")]
    stages += STAGES[1:]
    knobs = {**_defn().knobs, "parallelism.read": IntKnob(1, 4)}
    a = analyze(
        _defn(stages=stages, knobs=knobs),
        _measurement(bandwidth=20e6),
        budget_cores=2,
        budget_memory_bytes=0,
    )
    assert a.source_bound_samples_per_second == pytest.approx(4 * 200)


def test_bandwidth_below_what_was_measured_is_no_bound() -> None:
    # 10 MB/s would allow 100 samples/s, but the profile already read 744 samples/s
    a = analyze(_defn(), _measurement(bandwidth=10e6), budget_cores=2, budget_memory_bytes=0)
    assert a.source_bound_samples_per_second is None
    assert a.upper_bound_samples_per_second == pytest.approx(1520, rel=1e-3)
    assert any("not used as a bound" in line for line in a.explanation)


def test_config_maps_parallelism_and_fits_the_cpu_budget() -> None:
    a = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=0)
    config = config_from_analysis(_defn(), a)
    assert config["cache"] is None
    assert 1 <= config["parallelism.decode"] <= 2
    assert core_demand(_defn(), a, config) <= 2 + 1e-6
    # Little's law: 47.5 batches/s x 0.0429 s per batch = 2.04 -> 3 batches
    assert config["prefetch"] == math.ceil(a.upper_bound_samples_per_second / 32 * 0.0429)


def test_dataloader_pool_gets_workers_and_prefetch_factor() -> None:
    knobs = {
        "num_workers": IntKnob(0, 8),
        "prefetch_factor": IntKnob(1, 8),
        "persistent_workers": ChoiceKnob((False, True)),
        "pin_memory": ChoiceKnob((False, True)),
    }
    stages = [StageInfo(s.name, s.kind, s.sequential, s.random) for s in STAGES]
    defn = _defn(
        engine="dataloader",
        knobs=knobs,
        stages=stages,
        naive_config={"num_workers": 0, "prefetch_factor": 2},
    )
    a = analyze(defn, _measurement(), budget_cores=2, budget_memory_bytes=0)
    config = config_from_analysis(defn, a)
    assert config["num_workers"] == 2  # ceil(47.5 x 0.0384): decode+crop keep 1.8 workers busy
    assert config["prefetch_factor"] >= 2
    assert config["persistent_workers"] is True and config["pin_memory"] is False


def test_failed_or_empty_measurement_is_a_clear_error() -> None:
    m = _measurement()
    with pytest.raises(InvalidInputError, match="failed measurement"):
        analyze(
            _defn(),
            Measurement(**{**m.__dict__, "error": "timeout"}),
            budget_cores=2,
            budget_memory_bytes=0,
        )
    with pytest.raises(InvalidInputError, match="no batches"):
        analyze(
            _defn(),
            Measurement(**{**m.__dict__, "batches": 0}),
            budget_cores=2,
            budget_memory_bytes=0,
        )


def _cache_everything_defn() -> PipelineDef:
    """The same stages, but no random stage: the batches themselves may be cached."""
    stages = [StageInfo(s.name, s.kind, s.sequential, False, s.parallelism_knob) for s in STAGES]
    knobs = dict(_defn().knobs)
    knobs["cache"] = ChoiceKnob((None, "read", "decode", "crop", "batch"))
    return _defn(stages=stages, knobs=knobs, materialized_bytes={"batch": 1 * GIB})


def test_consumer_bounds_a_cache_of_finished_batches() -> None:
    # Without the consumer, caching the batches leaves nothing to bound: unbounded.
    a = analyze(
        _cache_everything_defn(), _measurement(), budget_cores=2, budget_memory_bytes=8 * GIB
    )
    assert a.cache == "batch"
    assert math.isinf(a.upper_bound_steady)
    # A consumer copying each batch in 2 ms bounds the replay at 500 batches/s.
    m = Measurement(**{**_measurement().__dict__, "consumer_seconds": 0.2})  # 100 batches
    a = analyze(_cache_everything_defn(), m, budget_cores=2, budget_memory_bytes=8 * GIB)
    assert a.cache == "batch"
    assert a.consumer_bound_samples_per_second == pytest.approx(500 * 32)
    assert a.upper_bound_steady == pytest.approx(500 * 32)
    assert a.lp_bottleneck == "consumer"
    assert "consumer's copy of each batch binds" in " ".join(a.explanation)
    # ... and the bound the tuner compares with is the mean over the 10-epoch run.
    first = a.upper_bound_no_cache
    assert first < 1520  # the consumer's core is taken from the budget too
    assert a.upper_bound_samples_per_second == pytest.approx(10 / (1 / first + 9 / (500 * 32)))
    # A one-epoch run gains nothing from a cache: none is chosen.
    one = analyze(
        _cache_everything_defn(), m, budget_cores=2, budget_memory_bytes=8 * GIB, epochs=1
    )
    assert one.cache is None
    assert one.upper_bound_samples_per_second == pytest.approx(first)


def test_run_rate_and_effective_rate() -> None:
    from placer.tuners.analysis import effective_rate, run_rate

    assert run_rate(100.0, 1000.0, 10) == pytest.approx(10 / (1 / 100 + 9 / 1000))
    assert run_rate(100.0, 1000.0, 1) == 100.0
    assert run_rate(100.0, math.inf, 4) == pytest.approx(400.0)
    base = _measurement()
    window = base.samples_per_second
    # uncached without epoch information: the window's rate
    assert effective_rate(base, 10, cached=False) == window
    # cached, the run never left its first epoch: the cache is not credited
    m = Measurement(**{**base.__dict__, "first_epoch_samples_per_second": 500.0})
    assert effective_rate(m, 10, cached=True) == 500.0
    assert effective_rate(base, 10, cached=True) == window
    # both epochs seen: the run's mean, whatever the window's mix of the two
    m = Measurement(
        **{
            **base.__dict__,
            "samples_per_second": 1e9,
            "first_epoch_samples_per_second": 500.0,
            "steady_samples_per_second": 50_000.0,
        }
    )
    assert effective_rate(m, 10, cached=True) == pytest.approx(10 / (1 / 500 + 9 / 50_000))
    assert effective_rate(m, 10, cached=True) < 5000


def test_consumer_bound_uses_its_best_warm_copy() -> None:
    # mean copy 2 ms per batch in the profile, best warm copy 0.5 ms: bound 2000 batches/s
    m = Measurement(
        **{
            **_measurement().__dict__,
            "consumer_seconds": 0.2,
            "consumer_best_seconds_per_batch": 0.0005,
        }
    )
    a = analyze(_cache_everything_defn(), m, budget_cores=2, budget_memory_bytes=8 * GIB)
    assert a.consumer_seconds_per_batch == pytest.approx(0.0005)
    assert a.upper_bound_steady == pytest.approx(2000 * 32)


def test_calibrated_stage_cpu_is_held_to_what_the_process_used() -> None:
    """tf.data stage costs are calibrated apart from the run; when they add up to more
    CPU than the process spent, the bound would sit below what the pipeline reaches."""
    m = _measurement()
    # stages sum to 4.21 CPU-s; the process used 2.5 s, 0.4 s of it the consumer's copy
    m = Measurement(**{**m.__dict__, "process_cpu_seconds": 2.5, "consumer_seconds": 0.4})
    budget = dict(budget_cores=2, budget_memory_bytes=512 * 1024**2)
    traced = analyze(_defn(), m, **budget)  # type: ignore[arg-type]
    calibrated = analyze(_defn(engine="tfdata"), m, **budget)  # type: ignore[arg-type]
    scale = (2.5 - 0.4) / 4.21
    assert calibrated.stage("decode").cpu_per_batch == pytest.approx(0.032 * scale, rel=1e-6)
    assert calibrated.upper_bound_no_cache > traced.upper_bound_no_cache * 1.5
    assert any("stage CPU scaled by 0.50" in n for n in calibrated.notes)
    # traced engines' thread CPU is taken as measured
    assert traced.stage("decode").cpu_per_batch == pytest.approx(0.032)
    assert not any("scaled" in n for n in traced.notes)


def test_a_cache_is_chosen_when_the_consumer_binds_both_bounds() -> None:
    """issue 13: the consumer's copy bounds the run with and without the cache, yet the
    cache takes decode's work off the cores; it is chosen (it was not: "no cache")."""
    # 50 ms per batch of copying: 20 batches/s with or without the cache
    m = Measurement(**{**_measurement().__dict__, "consumer_seconds": 5.0})
    a = analyze(_cache_everything_defn(), m, budget_cores=2, budget_memory_bytes=8 * GIB)
    assert a.upper_bound_no_cache == pytest.approx(20 * 32, rel=1e-6)
    assert a.upper_bound_steady == pytest.approx(20 * 32, rel=1e-6)
    assert a.cache == "batch" and a.cache_reason is None
    # one epoch: nothing to amortize over, so no cache, and it says why
    one = analyze(
        _cache_everything_defn(), m, budget_cores=2, budget_memory_bytes=8 * GIB, epochs=1
    )
    assert one.cache is None
    assert (
        one.cache_reason
        == "no cache: caching after batch does not raise the delivered rate over a run of "
        "1 epoch(s)"
    )
    assert one.cache_reason in one.explanation


def test_no_cache_for_lack_of_memory_says_how_much_is_missing() -> None:
    a = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=512 * 1024**2)
    assert a.cache is None
    assert a.cache_reason == (
        "no cache: no cacheable stage's output fits the memory budget (512.0 MiB above the "
        "pipeline's own use; the smallest, read, needs 1.0 GiB)"
    )
    assert a.cache_reason in a.explanation


def test_the_default_memory_budget_scales_with_the_host() -> None:
    assert DEFAULT_MEMORY_SHARE == 0.5
    assert default_memory_budget(126 * GIB, 2 * GIB) == 65 * GIB
    assert default_memory_budget(4 * GIB, 1 * GIB) == 3 * GIB
    assert default_memory_budget(0, 1 * GIB) == 1 * GIB
    assert default_memory_budget(10 * GIB, 0, share=0.25) == int(2.5 * GIB)


def test_prefetch_only_covers_latency_that_can_overlap_the_consumer() -> None:
    """Little's law over the latency a prefetch thread can overlap: where the stages and
    the consumer hold the GIL there is none, and the analysis asks for no prefetch."""
    base = analyze(_defn(), _measurement(), budget_cores=2, budget_memory_bytes=0)
    assert base.prefetch >= 1  # no GIL measured: everything overlaps
    held = [dataclasses.replace(s, gil_share=1.0) for s in STATS]
    m = Measurement(**{**_measurement().__dict__, "stages": held, "consumer_gil_share": 1.0})
    assert analyze(_defn(), m, budget_cores=2, budget_memory_bytes=0).prefetch == 0
    # a consumer that releases the GIL overlaps with them again
    m = Measurement(**{**_measurement().__dict__, "stages": held, "consumer_gil_share": 0.0})
    assert analyze(_defn(), m, budget_cores=2, budget_memory_bytes=0).prefetch >= 1


def test_a_probed_hand_off_bounds_worker_configs_and_in_process_ones_run_alone() -> None:
    """DataLoader's consumer thread receives each batch (probed: 50 ms here); with no
    workers it runs every stage and a warm copy (1 ms) itself: the bound is the better."""
    m = Measurement(
        **{
            **_measurement().__dict__,
            "consumer_seconds": 0.1,
            "delivery_seconds_per_batch": 0.05,
            "worker_startup_seconds": 0.3,
        }
    )
    a = analyze(_defn(), m, budget_cores=2, budget_memory_bytes=0)
    # workers: at most 20 batches/s through the hand-off; alone: 1 / (0.0421 + 0.001)
    assert a.upper_bound_no_cache == pytest.approx(32 / 0.0431, rel=1e-6)
    assert a.consumer_seconds_per_batch == pytest.approx(0.05)
    assert a.delivery_seconds_per_batch == 0.05 and a.worker_startup_seconds == 0.3
    assert any("receives each batch from a worker in 50.00 ms" in n for n in a.notes)
    # a cheap hand-off leaves the worker bound as it was without the probe
    cheap = Measurement(**{**m.__dict__, "delivery_seconds_per_batch": 0.0005})
    plain = Measurement(**{**m.__dict__, "delivery_seconds_per_batch": None})
    b = analyze(_defn(), cheap, budget_cores=2, budget_memory_bytes=0)
    c = analyze(_defn(), plain, budget_cores=2, budget_memory_bytes=0)
    assert b.upper_bound_no_cache == pytest.approx(c.upper_bound_no_cache)
    assert c.upper_bound_no_cache > a.upper_bound_no_cache
