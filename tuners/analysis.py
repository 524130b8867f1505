"""Plumber-style operational analysis of an input pipeline (Kuchnik et al., MLSys'22).

From one probed :class:`~placer.contracts.pipeline.Measurement` the analysis derives, per
stage, the *visit ratio* (elements the stage produces per output batch), its *per-core
service rate* (output batches per CPU-second spent in the stage) and its *per-worker rate*
(output batches per wall-second of one worker; lower than the per-core rate when the stage
waits on I/O). A linear program (:func:`scipy.optimize.linprog`, HiGHS) then splits the
CPU budget across stages to maximize the pipeline rate, the minimum over stages of
``cores × per-core rate``; sequential stages get at most one core (and one worker). The
LP optimum, also capped by the source's read bandwidth and, for engines whose stages are
threads of one interpreter, by the GIL (the measured GIL-holding CPU of all those stages
and the consumer fits in one core), is an upper bound on throughput.
Prefetch depth follows Little's law (rate × per-batch latency) and the cache goes after
the stage nearest the output whose materialized output fits the memory budget, never at
or after a random stage (its output changes every epoch).

Everything here is pure computation on the measurement, so it is tested on recorded
measurements and reused by the tuner and the benchmark.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from placer.contracts.pipeline import (
    ChoiceKnob,
    IntKnob,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
)
from placer.errors import InvalidInputError

#: Below this CPU time a stage is treated as free (no measurable CPU per batch).
EPS_CPU = 1e-9

#: Default training-run length (epochs) over which a cache's first epoch is amortized.
DEFAULT_EPOCHS = 10

#: Share of the host's available memory (``MemAvailable`` when profiled) that a cache may
#: take by default, on top of what the pipeline already uses (``--budget-mem`` overrides).
DEFAULT_MEMORY_SHARE = 0.5

#: Engines whose per-stage CPU is calibrated apart from the run, not traced per call
#: (collectors/pipeline/adapters/tfdata.py); their sum is checked against the process.
CALIBRATED_ENGINES = frozenset({"tfdata"})

#: Name of the consumer pseudo-stage (the loop that materializes each batch).
CONSUMER = "consumer"


@dataclass
class StageAnalysis:
    """The model of one stage (rates in output *batches* per second)."""

    name: str
    kind: str
    sequential: bool
    random: bool
    visit_ratio: float  # elements this stage produces per output batch
    cpu_per_batch: float  # CPU-seconds this stage spends per output batch
    wall_per_batch: float  # worker wall-seconds this stage spends per output batch
    core_rate: float | None  # batches per CPU-second (None: no measurable CPU)
    worker_rate: float | None  # batches per wall-second of one worker (None: free)
    measured_parallelism: int
    measured_rate: float | None  # core_rate (or worker_rate) × measured parallelism
    cores: float = 0.0  # LP share of the CPU budget
    parallelism: int = 1  # integer workers derived from the LP
    materialized_bytes: int | None = None  # memory to cache this stage's epoch output
    cacheable: bool = False
    gil_share: float | None = None  # share of its CPU that holds the GIL (None: unknown/none)


@dataclass
class Analysis:
    """The analysis of one measurement under a CPU and memory budget."""

    pipeline: str
    batch_size: float  # samples per output batch (measured)
    budget_cores: float
    budget_memory_bytes: int
    measured_samples_per_second: float
    stages: list[StageAnalysis]
    bottleneck: str  # the stage limiting the measured configuration
    bottleneck_samples_per_core: float | None  # its per-core rate, samples/s
    lp_bottleneck: str | None  # what binds at the LP optimum (a stage, "cores", "source")
    upper_bound_samples_per_second: float  # LP optimum with the chosen cache
    upper_bound_no_cache: float  # LP optimum without cache
    source_bound_samples_per_second: float | None
    cache: str | None
    cache_bytes: int
    prefetch: int
    latency_seconds: float  # one batch through all uncached stages, one worker each
    workers: int  # for one-pool engines (DataLoader): workers to keep the bound
    cache_considered: bool = False  # the pipeline has a cache knob
    cache_reason: str | None = None  # why no cache was chosen (None: one was, or no knob)
    delivery_seconds_per_batch: float | None = None  # engine hand-off, probed (DataLoader)
    worker_startup_seconds: float | None = None  # a worker pool's start-up, probed
    host_cores: int = 0  # cores of the host that measured
    epochs: int = DEFAULT_EPOCHS  # training run the cached bound is amortized over
    upper_bound_steady: float = math.inf  # with the cache, after its first epoch
    consumer_seconds_per_batch: float = 0.0  # the consumer's copy of one batch
    consumer_bound_samples_per_second: float | None = None  # one consumer thread's most
    consumer_gil_share: float | None = None  # the consumer's GIL share (shared interpreter)
    # one interpreter runs Python on one core at a time: samples/s at which the GIL-holding
    # CPU of the stages and the consumer fills a core (None: no GIL term)
    gil_bound_samples_per_second: float | None = None
    upper_bound_without_gil: float | None = None  # the same bound without the GIL term
    lp_bottleneck_no_cache: str | None = None  # what binds the no-cache LP
    explanation: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (an unbounded rate, every stage cached, becomes ``None``)."""
        doc: dict[str, Any] = _finite(asdict(self))
        return doc

    def stage(self, name: str) -> StageAnalysis:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)


# --------------------------------------------------------------------------- helpers


def default_memory_budget(
    available_bytes: int, baseline_bytes: int = 0, share: float = DEFAULT_MEMORY_SHARE
) -> int:
    """The memory budget when none is given: what the pipeline already uses plus ``share``
    of what the host has available, so a cache's room scales with the host (half of
    126 GiB on a big host, half of a few GiB on a small one)."""
    return max(int(baseline_bytes), 0) + max(int(available_bytes * share), 0)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def run_rate(first: float, steady: float, epochs: int) -> float:
    """Mean rate over a run of ``epochs`` equal epochs: the first at ``first``, the rest
    at ``steady`` (same unit, e.g. samples/s): ``epochs / (1/first + (epochs-1)/steady)``."""
    if epochs <= 1 or first <= 0 or math.isinf(first):
        return max(first, 0.0)
    inv_steady = 1.0 / steady if 0 < steady < math.inf else 0.0
    if steady <= 0:
        return first / epochs  # the later epochs deliver nothing measurable
    return epochs / (1.0 / first + (epochs - 1) * inv_steady)


def effective_rate(m: Measurement, epochs: int, *, cached: bool) -> float:
    """Samples/s a config delivers over a training run of ``epochs`` epochs.

    When the measurement saw the first epoch end (timed from the first ``next()``, start-up
    included) and batches after it, the two rates (``first_epoch_samples_per_second``,
    ``steady_samples_per_second``, both with the consumer materializing every batch) are
    combined by :func:`run_rate`: a cached config's first epoch runs every stage and fills
    the cache, the later ones are served from it; an uncached config pays its start-up
    once. Otherwise: a cached config gets its first epoch's rate if known (the cache is not
    credited before it was seen to pay), else the window's rate, all first epoch.
    """
    first, steady = m.first_epoch_samples_per_second, m.steady_samples_per_second
    if first and steady:
        return run_rate(first, steady, epochs)
    if cached and first:
        return first
    return m.samples_per_second


def _overlap_seconds(stages: list[StageAnalysis], consumer_gil_share: float | None) -> float:
    """Per-batch wall time of ``stages`` that a prefetch thread can overlap with the
    consumer: ``Σ wall_i × (1 − g_i × g_c)``; a share not measured (worker processes,
    native threads) counts as no GIL. On 2 cores the torchdata grids' best configs had
    prefetch 0 where the stages and the consumer hold the GIL (issue 13)."""
    g_c = consumer_gil_share or 0.0
    return sum(s.wall_per_batch * (1.0 - (s.gil_share or 0.0) * g_c) for s in stages)


def _one_thread_rate(stages: list[StageAnalysis], copy_seconds: float) -> float:
    """Batches/s of one thread running ``stages`` and the consumer's copy, nothing handed
    off (DataLoader with ``num_workers=0``): one over their CPU per batch."""
    cpu = sum(s.cpu_per_batch for s in stages) + copy_seconds
    return 1.0 / cpu if cpu > EPS_CPU else math.inf


def _depth(in_flight: float) -> int:
    """Prefetch depth for ``in_flight`` batches (Little's law): none under half a batch."""
    return 0 if in_flight < 0.5 else math.ceil(in_flight - 1e-9)


def _per_batch_rates(info: StageInfo, stats: StageStats, batches: int) -> dict[str, Any]:
    visit = stats.elements_out / batches
    cpu = max(stats.cpu_seconds, 0.0) / batches
    wall = max(stats.wall_seconds, stats.cpu_seconds, 0.0) / batches
    core_rate = 1.0 / cpu if cpu > EPS_CPU else None
    worker_rate = 1.0 / wall if wall > EPS_CPU else None
    return {"visit": visit, "cpu": cpu, "wall": wall, "core": core_rate, "worker": worker_rate}


def _materialized(defn: PipelineDef, stats: StageStats, epoch_batches: float, visit: float) -> int:
    if stats.name in defn.materialized_bytes:
        return int(defn.materialized_bytes[stats.name])
    if stats.elements_out <= 0:
        return 0
    per_element = stats.bytes_out / stats.elements_out
    return int(math.ceil(per_element * visit * epoch_batches))


def _consumer_stage(
    seconds_per_batch: float, gil_share: float | None = None
) -> StageAnalysis | None:
    """The consumer as a sequential stage that a cache never removes (None: free)."""
    if seconds_per_batch <= EPS_CPU:
        return None
    rate = 1.0 / seconds_per_batch
    return StageAnalysis(
        name=CONSUMER,
        kind=CONSUMER,
        sequential=True,
        random=False,
        visit_ratio=1.0,
        cpu_per_batch=seconds_per_batch,
        wall_per_batch=seconds_per_batch,
        core_rate=rate,
        worker_rate=rate,
        measured_parallelism=1,
        measured_rate=rate,
        gil_share=gil_share,
    )


def gil_seconds_per_batch(stages: list[StageAnalysis]) -> float:
    """CPU-seconds per output batch that hold the GIL: ``Σ cpu_per_batch_i × g_i`` over the
    stages whose share was measured (those sharing one interpreter; unknown counts 0)."""
    return sum(s.cpu_per_batch * s.gil_share for s in stages if s.gil_share)


def _lp(
    stages: list[StageAnalysis],
    budget_cores: float,
    cap_batches: float | None,
    max_workers: Mapping[str, int],
    *,
    gil: bool = True,
) -> tuple[float, dict[str, float], str | None]:
    """Max T s.t. T <= c_i r_i, sum c_i <= C, c_i <= 1 (sequential), T <= caps.

    Returns (T in batches/s, cores per stage, what binds). Stages without measurable CPU
    need no cores; every stage is also capped by its most workers (one if sequential,
    the knob's upper end otherwise) times one worker's wall rate. Stages with a measured
    GIL share share one interpreter: ``T × Σ cpu_per_batch_i × g_i <= 1`` (``"gil"``).
    """
    from scipy.optimize import linprog  # lazy: heavy

    cpu_stages = [s for s in stages if s.core_rate is not None]
    n = len(cpu_stages)
    caps: list[tuple[float, str]] = []
    for s in stages:
        if s.worker_rate is not None:
            most = 1 if s.sequential else max(int(max_workers.get(s.name, 1)), 1)
            caps.append((most * s.worker_rate, s.name))
    if cap_batches is not None:
        caps.append((cap_batches, "source"))
    held = gil_seconds_per_batch(stages) if gil else 0.0
    if held > EPS_CPU:
        # The GIL term involves T alone, so it is a cap on T.
        caps.append((1.0 / held, "gil"))
    if n == 0:
        if not caps:
            return math.inf, {}, None
        value, name = min(caps)
        return value, {}, name
    # variables: c_1..c_n, T ; minimize -T
    cost = [0.0] * n + [-1.0]
    a_ub: list[list[float]] = []
    b_ub: list[float] = []
    for i, s in enumerate(cpu_stages):
        row = [0.0] * (n + 1)
        row[i] = -float(s.core_rate)  # type: ignore[arg-type]
        row[n] = 1.0
        a_ub.append(row)
        b_ub.append(0.0)
    a_ub.append([1.0] * n + [0.0])
    b_ub.append(float(budget_cores))
    bounds: list[tuple[float | None, float | None]] = []
    for s in cpu_stages:
        bounds.append((0.0, 1.0 if s.sequential else None))
    t_cap = min((c for c, _ in caps), default=None)
    bounds.append((0.0, t_cap))
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise InvalidInputError(f"pipeline analysis LP failed: {res.message}")
    t_opt = float(res.x[n])
    cores = {s.name: float(res.x[i]) for i, s in enumerate(cpu_stages)}
    # What binds: a cap at its value, or the core budget (all parallel stages share it).
    binding: str | None = "cores"
    for value, name in sorted(caps):
        if t_opt >= value * (1 - 1e-6):
            binding = name
            break
    return t_opt, cores, binding


def _max_workers(defn: PipelineDef) -> dict[str, int]:
    """The most workers each stage's knob allows (DataLoader: the pool's upper end)."""
    out: dict[str, int] = {}
    pool = defn.knobs.get("num_workers")
    for info in defn.stages:
        knob = defn.knobs.get(info.parallelism_knob or f"parallelism.{info.name}")
        if isinstance(knob, IntKnob):
            out[info.name] = knob.high
        elif isinstance(knob, ChoiceKnob):
            nums = [c for c in knob.choices if isinstance(c, int) and not isinstance(c, bool)]
            if nums:
                out[info.name] = max(nums)
        elif isinstance(pool, IntKnob) and not info.sequential:
            out[info.name] = max(pool.high, 1)
    return out


# --------------------------------------------------------------------------- analysis


def analyze(
    defn: PipelineDef,
    measurement: Measurement,
    *,
    budget_cores: float,
    budget_memory_bytes: int,
    baseline_memory_bytes: int | None = None,
    epochs: int = DEFAULT_EPOCHS,
) -> Analysis:
    """Analyze ``measurement`` of ``defn`` under the given budgets.

    ``baseline_memory_bytes`` is what the pipeline takes without a cache (default: the
    measurement's peak RSS); the cache must fit in what the budget leaves above it.
    The consumer (the loop materializing each batch, ``Measurement.consumer_seconds``) is
    a sequential stage no cache removes. With a cache the bound is the mean over a run of
    ``epochs`` epochs (:func:`run_rate`: the first at the no-cache bound, the others at
    the cached one), the same quantity the tuner's objective measures.
    """
    if epochs < 1:
        raise InvalidInputError(f"epochs must be at least 1, got {epochs}")
    if measurement.error:
        raise InvalidInputError(f"cannot analyze a failed measurement: {measurement.error}")
    if measurement.batches <= 0:
        raise InvalidInputError(
            f"pipeline {defn.name!r} produced no batches while profiling; nothing to analyze"
        )
    if budget_cores <= 0:
        raise InvalidInputError(f"CPU budget must be positive, got {budget_cores}")
    batches = measurement.batches
    samples_per_batch = measurement.samples / batches if measurement.samples else defn.batch_size
    epoch_batches = max(defn.dataset_samples / max(samples_per_batch, 1e-9), 1.0)
    by_name = {s.name: s for s in measurement.stages}
    missing = [s.name for s in defn.stages if s.name not in by_name]
    if missing:
        raise InvalidInputError(
            f"measurement of {defn.name!r} has no stats for stage(s) {', '.join(missing)}"
        )

    # Stage CPU cannot exceed what the process used. Traced engines (thread CPU per call)
    # stay below it; calibrated ones (tf.data: each stage timed apart, on a few elements)
    # overshot it by about 1.8x on images-tfdata, which put the bound below what configs
    # reached. Their split is kept and their sum scaled to the process's CPU less the
    # consumer's (its copy time, an upper estimate of its CPU: the bound stays a bound).
    stage_cpu = sum(max(by_name[i.name].cpu_seconds, 0.0) for i in defn.stages)
    room_cpu = measurement.process_cpu_seconds - max(measurement.consumer_seconds, 0.0)
    cpu_scale = 1.0
    if (
        defn.engine in CALIBRATED_ENGINES
        and measurement.process_cpu_seconds > 0
        and stage_cpu > 0
        and room_cpu < stage_cpu * 0.95
    ):
        cpu_scale = max(room_cpu, 0.05 * stage_cpu) / stage_cpu
    stages: list[StageAnalysis] = []
    first_random = next((i for i, s in enumerate(defn.stages) if s.random), len(defn.stages))
    for pos, info in enumerate(defn.stages):
        stats = by_name[info.name]
        if cpu_scale < 1.0:
            stats = dataclasses.replace(stats, cpu_seconds=stats.cpu_seconds * cpu_scale)
        r = _per_batch_rates(info, stats, batches)
        par = max(int(stats.parallelism), 1)
        measured = None
        if r["core"] is not None:
            # p workers of this stage run at most p × worker rate and p × core rate.
            measured = par * (r["worker"] if r["worker"] is not None else r["core"])
        stages.append(
            StageAnalysis(
                name=info.name,
                kind=info.kind,
                sequential=info.sequential,
                random=info.random,
                visit_ratio=r["visit"],
                cpu_per_batch=r["cpu"],
                wall_per_batch=r["wall"],
                core_rate=r["core"],
                worker_rate=r["worker"],
                measured_parallelism=par,
                measured_rate=measured,
                materialized_bytes=_materialized(defn, stats, epoch_batches, r["visit"]),
                cacheable=pos < first_random,
                gil_share=getattr(stats, "gil_share", None),
            )
        )

    # Bottleneck of the measured configuration: lowest rate × its parallelism.
    rated = [s for s in stages if s.measured_rate is not None]
    bott = min(rated, key=lambda s: s.measured_rate) if rated else stages[-1]  # type: ignore[arg-type, return-value]
    bott_core = bott.core_rate * samples_per_batch if bott.core_rate else None

    # Source bandwidth bound: bytes the source stage reads per batch.
    max_workers = _max_workers(defn)
    for st in stages:
        max_workers.setdefault(st.name, st.measured_parallelism)

    # Source bound. The host's bandwidth probe reads with one stream, so it bounds one
    # reader: a parallel source gets it once per worker it may run.
    source_cap: float | None = None
    src = defn.stages[0].name if defn.stages else None
    bw = measurement.host.source_read_bytes_per_second
    source_note = None
    if src is not None and bw and by_name[src].bytes_out > 0:
        bytes_per_batch = by_name[src].bytes_out / batches
        streams = 1 if defn.stages[0].sequential else max(int(max_workers.get(src, 1)), 1)
        source_cap = streams * bw / bytes_per_batch
        measured_rate = batches / max(measurement.wall_seconds, 1e-9)
        if source_cap < measured_rate:
            # The pipeline already read faster than the bandwidth probe (one stream, or a
            # per-connection cap): the probe is no bound, so it is left out.
            source_note = (
                f"the source's measured read bandwidth ({_fmt_bytes(int(bw))}/s) is below "
                f"what the pipeline already read; not used as a bound"
            )
            source_cap = None

    # The consumer's best warm copy of a batch, not its mean in the profile (which other
    # threads and cold memory slow down): a cached replay copies warm batches.
    consumer_per_batch = max(measurement.consumer_seconds, 0.0) / batches
    if measurement.consumer_best_seconds_per_batch is not None:
        consumer_per_batch = min(consumer_per_batch, measurement.consumer_best_seconds_per_batch)
    # An engine with worker processes hands each batch to the consumer's thread, which
    # pays for receiving it (probed: Measurement.delivery_seconds_per_batch, the copy of
    # the received batch included); in-process configs (num_workers=0) do not.
    copy_per_batch = consumer_per_batch
    delivered = measurement.delivery_seconds_per_batch
    if delivered is not None and delivered > consumer_per_batch:
        consumer_per_batch = delivered
    # The consumer runs in the stages' interpreter when their GIL shares were measured.
    consumer = _consumer_stage(consumer_per_batch, measurement.consumer_gil_share)
    tail = [consumer] if consumer is not None else []
    gil_held = gil_seconds_per_batch(stages + tail)
    t_nc, cores_nc, bind_nc = _lp(stages + tail, budget_cores, source_cap, max_workers)

    # Cache: nearest the output, before any random stage, fitting the memory budget.
    base_mem = (
        measurement.peak_rss_bytes if baseline_memory_bytes is None else baseline_memory_bytes
    )
    room = budget_memory_bytes - max(base_mem, 0)
    cache_choices: tuple[Any, ...] | None = None
    knob = defn.knobs.get("cache")
    if isinstance(knob, ChoiceKnob):
        cache_choices = knob.choices
    cache: str | None = None
    cache_bytes = 0
    cache_reason: str | None = None
    candidates = [
        s for s in stages if s.cacheable and cache_choices is not None and s.name in cache_choices
    ]
    if cache_choices is not None and not candidates:
        cache_reason = (
            "no cache: the first stage is already random"
            if not any(s.cacheable for s in stages)
            else "no cache: the cache knob names no stage before the first random one"
        )
    elif candidates:
        fitting = [s for s in candidates if (s.materialized_bytes or 0) <= room]
        if not fitting:
            smallest = min(candidates, key=lambda s: s.materialized_bytes or 0)
            cache_reason = (
                f"no cache: no cacheable stage's output fits the memory budget "
                f"({_fmt_bytes(max(room, 0))} above the pipeline's own use; the smallest, "
                f"{smallest.name}, needs {_fmt_bytes(int(smallest.materialized_bytes or 0))})"
            )
        else:
            # nearest the output: it removes the most work after the first epoch
            cache, cache_bytes = fitting[-1].name, int(fitting[-1].materialized_bytes or 0)

    t_opt, cores, binding = t_nc, cores_nc, bind_nc
    if cache is not None:
        cut = [s.name for s in stages].index(cache)
        after = stages[cut + 1 :]
        # After the first epoch the cached prefix (source included) costs nothing.
        t_c, cores_c, bind_c = _lp(after + tail, budget_cores, None, max_workers)
        raises = t_c > t_nc and run_rate(t_nc, t_c, epochs) > t_nc * 1.01
        if not raises and epochs > 1 and t_c >= t_nc * (1 - 1e-9):
            # The consumer (or the GIL) binds both bounds, yet the cache still takes the
            # prefix's work off the cores: the engine's own per-batch costs, which the
            # bound does not hold, then get them (issue 13: on 16 cores the decode cache
            # delivered 2,827-3,026 samples/s, below the consumer's bound, where the
            # no-cache configs did 2,598). Chosen when the stages' own rate rises.
            work_nc = _lp(stages, budget_cores, source_cap, max_workers)[0]
            work_c = _lp(after, budget_cores, None, max_workers)[0]
            raises = work_c > work_nc and run_rate(work_nc, work_c, epochs) > work_nc * 1.01
        if raises:
            t_opt, cores, binding = t_c, cores_c, bind_c
        else:
            cache_reason = (
                f"no cache: caching after {cache} does not raise the delivered rate over "
                f"a run of {epochs} epoch(s)"
            )
            cache, cache_bytes = None, 0
    live = stages if cache is None else stages[[s.name for s in stages].index(cache) + 1 :]

    # Integer parallelism: enough workers to sustain the LP rate at each stage's
    # per-worker (wall) rate; sequential stages keep one worker.
    # Cached stages only run in the first epoch: give them the no-cache optimum's share.
    live_names = {s.name for s in live}
    for st in stages:
        target = t_opt if st.name in live_names else t_nc
        st.cores = (cores if st.name in live_names else cores_nc).get(st.name, 0.0)
        if st.sequential or st.worker_rate is None or not math.isfinite(target):
            st.parallelism = 1
        else:
            # nearest integer to the LP's fractional workers; _fit_cores trims overshoot
            need = max(1, math.floor(target / st.worker_rate + 0.5))
            st.parallelism = min(need, max(int(max_workers.get(st.name, need)), 1))

    latency = sum(s.wall_per_batch for s in live)
    t_for_little = (
        t_opt if math.isfinite(t_opt) else measurement.batches / max(measurement.wall_seconds, 1e-9)
    )
    # Little's law: batches in flight = rate x latency, over the latency a prefetch
    # thread can overlap with the consumer (GIL-held work of both cannot overlap). With
    # every stage cached, or less than half a batch to overlap, nothing is gained and a
    # prefetch thread's hand-off would only cost.
    gil_c = measurement.consumer_gil_share
    prefetch = _depth(t_for_little * _overlap_seconds(live, gil_c))
    workers = max(
        1, math.ceil(t_for_little * sum(s.wall_per_batch for s in live if not s.sequential))
    )
    if cache is not None and 0 < t_nc < math.inf:
        # The first epoch runs every stage and fills the cache. When it takes most of the
        # run (1/t_nc against (epochs-1)/t_opt), size the overlap for it: with the cached
        # depth (none when every stage is cached) the first epoch would run its stages one
        # after another in the consumer's thread, far below the LP's split of the cores.
        later = (epochs - 1) / t_opt if 0 < t_opt < math.inf else 0.0
        if 1.0 / t_nc >= later:
            prefetch = max(prefetch, _depth(t_nc * _overlap_seconds(stages, gil_c)))
            workers = max(
                workers,
                math.ceil(t_nc * sum(s.wall_per_batch for s in stages if not s.sequential)),
            )

    upper_steady = t_opt * samples_per_batch
    upper_nc = t_nc * samples_per_batch
    if delivered is not None:  # in-process: no hand-off, every stage in the consumer's thread
        upper_nc = max(upper_nc, samples_per_batch * _one_thread_rate(stages, copy_per_batch))
        upper_steady = max(upper_steady, samples_per_batch * _one_thread_rate(live, copy_per_batch))
    # No start-up term: what a run pays before its first batch varies per config and per
    # process (imports, worker spawn), and the bound must stay an upper bound.
    upper = run_rate(upper_nc, upper_steady, epochs) if cache is not None else upper_nc
    without_gil: float | None = None
    if gil_held > EPS_CPU:  # what the bound was before the GIL term (same cache choice)
        free_nc = _lp(stages + tail, budget_cores, source_cap, max_workers, gil=False)[0]
        without_gil = free_nc * samples_per_batch
        if cache is not None:
            free_c = _lp(live + tail, budget_cores, None, max_workers, gil=False)[0]
            without_gil = run_rate(without_gil, free_c * samples_per_batch, epochs)
    analysis = Analysis(
        pipeline=defn.name,
        batch_size=samples_per_batch,
        budget_cores=float(budget_cores),
        budget_memory_bytes=int(budget_memory_bytes),
        measured_samples_per_second=measurement.samples_per_second,
        stages=stages,
        bottleneck=bott.name,
        bottleneck_samples_per_core=bott_core,
        lp_bottleneck=binding,
        upper_bound_samples_per_second=upper,
        upper_bound_no_cache=upper_nc,
        source_bound_samples_per_second=(
            source_cap * samples_per_batch if source_cap is not None else None
        ),
        cache=cache,
        cache_bytes=cache_bytes,
        prefetch=prefetch,
        latency_seconds=latency,
        workers=workers,
        cache_considered=cache_choices is not None,
        cache_reason=cache_reason,
        delivery_seconds_per_batch=delivered,
        worker_startup_seconds=measurement.worker_startup_seconds,
        host_cores=int(measurement.host.cores),
        epochs=int(epochs),
        upper_bound_steady=upper_steady,
        consumer_seconds_per_batch=consumer_per_batch,
        consumer_bound_samples_per_second=(
            samples_per_batch / consumer_per_batch if consumer is not None else None
        ),
        consumer_gil_share=measurement.consumer_gil_share,
        gil_bound_samples_per_second=(samples_per_batch / gil_held if gil_held > EPS_CPU else None),
        upper_bound_without_gil=without_gil,
        lp_bottleneck_no_cache=bind_nc,
    )
    analysis.notes.extend(defn.notes)
    if source_note:
        analysis.notes.append(source_note)
    if delivered is not None:
        startup = measurement.worker_startup_seconds
        analysis.notes.append(
            f"the consumer's thread receives each batch from a worker in "
            f"{1000 * delivered:.2f} ms, its copy included (probed; a warm copy takes "
            f"{1000 * copy_per_batch:.2f} ms); with no workers it runs every stage itself"
            + (f"; a worker pool starts in {startup:.2f} s" if startup is not None else "")
        )
    if cpu_scale < 1.0:
        analysis.notes.append(
            f"the stages' CPU ({stage_cpu:.2f} s) was more than the process used less the "
            f"consumer ({room_cpu:.2f} s): stage CPU scaled by {cpu_scale:.2f}"
        )
    analysis.explanation = explain(analysis)
    return analysis


def _fmt_rate(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "unbounded"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _gil_clause(a: Analysis, stages: list[StageAnalysis]) -> str:
    """The GIL clause of a bound ("the GIL binds: 92% of tokenize's CPU holds it, ..."),
    largest holders first, so a reader sees which stage's Python serializes the run."""
    holders = [(s.cpu_per_batch * s.gil_share, s.name, s.gil_share) for s in stages if s.gil_share]
    if a.consumer_gil_share and a.consumer_seconds_per_batch > EPS_CPU:
        share = a.consumer_gil_share
        holders.append((a.consumer_seconds_per_batch * share, "the consumer", share))
    holders.sort(reverse=True)
    parts = [f"{100 * g:.0f}% of {name}'s CPU holds it" for held, name, g in holders[:3] if held]
    return (
        "the GIL binds: " + ", ".join(parts) + "; one interpreter runs Python on one core at a time"
    )


def explain(a: Analysis) -> list[str]:
    """Sentences a person can read: bottleneck, bound, cache, prefetch."""
    lines: list[str] = []
    b = a.stage(a.bottleneck)
    if a.bottleneck_samples_per_core is not None:
        par = b.measured_parallelism
        io = ""
        if b.worker_rate is not None and b.core_rate and b.worker_rate < 0.5 * b.core_rate:
            io = (
                f" (it waits: one worker manages only "
                f"{_fmt_rate(b.worker_rate * a.batch_size)} samples/s)"
            )
        lines.append(
            f"{b.name} is the bottleneck at {_fmt_rate(a.bottleneck_samples_per_core)} "
            f"samples/s per core{io}; with {par} worker{'s' if par != 1 else ''} the pipeline "
            f"measured {_fmt_rate(a.measured_samples_per_second)} samples/s"
        )
    else:
        lines.append(
            f"no stage spends measurable CPU; the pipeline measured "
            f"{_fmt_rate(a.measured_samples_per_second)} samples/s"
        )
    cores = f"{a.budget_cores:g} core{'s' if a.budget_cores != 1 else ''}"
    bound = f"{cores} bound the pipeline at {_fmt_rate(a.upper_bound_no_cache)} samples/s"
    # what binds without a cache (older analyses only stored the final LP's)
    nc = a.lp_bottleneck_no_cache or (a.lp_bottleneck if a.cache is None else None)
    if nc == "source" and a.source_bound_samples_per_second is not None:
        bound += " (the source's read bandwidth binds)"
    elif nc == CONSUMER:
        bound += " (the consumer's copy of each batch binds)"
    elif nc == "gil":
        bound += f" ({_gil_clause(a, a.stages)})"
    elif nc not in (None, "cores", "source", "gil", CONSUMER):
        st = a.stage(nc)
        most = "its one worker" if st.sequential else "the most workers its knob allows"
        bound += f" ({nc} binds at {most})"
    lines.append(bound)
    if a.cache is not None:
        removed = [s.name for s in a.stages[: [s.name for s in a.stages].index(a.cache) + 1]]
        if math.isfinite(a.upper_bound_steady):
            after = f"bound {_fmt_rate(a.upper_bound_steady)} samples/s"
            if a.lp_bottleneck == CONSUMER:
                after += " (the consumer's copy of each batch binds)"
            elif a.lp_bottleneck == "gil":
                cut = [s.name for s in a.stages].index(a.cache) + 1
                after += f" ({_gil_clause(a, a.stages[cut:])})"
        else:
            after = "no measured stage is left to bound the pipeline"
        lines.append(
            f"caching after {a.cache} ({_fmt_bytes(a.cache_bytes)}) removes "
            f"{', '.join(removed)} after the first epoch: {after}; over a run of "
            f"{a.epochs} epochs (the first one uncached) at most "
            f"{_fmt_rate(a.upper_bound_samples_per_second)} samples/s on average"
        )
    if a.cache is None and a.cache_considered:
        fits = [s for s in a.stages if s.cacheable]
        if a.cache_reason:
            lines.append(a.cache_reason)
        elif not fits:  # analyses stored before cache_reason
            lines.append("no cache: the first stage is already random")
        else:
            lines.append(
                "no cache: no cacheable stage's output fits the memory budget, or caching "
                f"does not raise the bound over a run of {a.epochs} epoch(s)"
            )
    lines.extend(a.notes)
    spread = ", ".join(
        f"{s.name}×{s.parallelism}" for s in a.stages if s.parallelism > 1 or s.cores > 0.05
    )
    if spread:
        lines.append(f"parallelism {spread}; prefetch {a.prefetch} batch(es) by Little's law")
    else:
        lines.append(f"prefetch {a.prefetch} batch(es) by Little's law")
    return lines
