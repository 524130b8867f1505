"""The contract between pipeline collectors and tuners.

A *pipeline definition* (:class:`PipelineDef`) describes an input pipeline as ordered
stages and the knobs that configure it, and can build a runnable pipeline from a config.
:func:`placer.collectors.pipeline.measure.measure` runs a built pipeline for a short while with
probes on and returns a :class:`Measurement`. Tuners (``tuners/``) only see these types:
they never import an engine (torch, tf) themselves.

Config keys are flat strings so that Optuna can search them directly:

- ``"parallelism.<stage>"``: worker threads/processes for a stage (torchdata.nodes,
  tf.data, plain Python) — ``int >= 1``;
- ``"num_workers"`` / ``"prefetch_factor"`` / ``"persistent_workers"`` / ``"pin_memory"``:
  PyTorch DataLoader's one pool;
- ``"prefetch"``: prefetch depth at the output (batches);
- ``"cache"``: name of the stage after which elements are cached in memory, or ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from placer.errors import InvalidInputError

Config = dict[str, Any]


@dataclass(frozen=True)
class IntKnob:
    """An integer knob searched in ``[low, high]`` (log scale when ``log``)."""

    low: int
    high: int
    log: bool = False


@dataclass(frozen=True)
class ChoiceKnob:
    """A categorical knob (``None`` allowed as a choice, e.g. no cache)."""

    choices: tuple[Any, ...]


Knob = IntKnob | ChoiceKnob

#: A knob space as it travels (daemon protocol, JSON): ``{"low", "high"[, "log"]}`` for an
#: :class:`IntKnob` (``"log"`` only when true), ``{"choices": [...]}`` for a :class:`ChoiceKnob`.
WireSpace = dict[str, dict[str, Any]]


def to_wire(knobs: Mapping[str, Knob]) -> WireSpace:
    """The JSON form of a knob space; :func:`from_wire` reads it back field for field."""
    out: WireSpace = {}
    for name, knob in knobs.items():
        if isinstance(knob, IntKnob):
            out[name] = {"low": knob.low, "high": knob.high}
            if knob.log:
                out[name]["log"] = True
        else:
            out[name] = {"choices": list(knob.choices)}
    return out


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def from_wire(doc: Any) -> dict[str, Knob]:
    """The knobs of a wire-form space, checked (one-line :class:`InvalidInputError`).

    The space comes from a job over the daemon's socket, so every field is checked here.
    """
    if not isinstance(doc, dict) or not doc:
        raise InvalidInputError("knob space must be a non-empty object of knob definitions")
    out: dict[str, Knob] = {}
    for name, spec in doc.items():
        if not isinstance(name, str) or not isinstance(spec, dict):
            raise InvalidInputError(f"knob {name!r}: a definition is an object")
        if "choices" in spec:
            ch = spec["choices"]
            if (
                not isinstance(ch, list | tuple)
                or not ch
                or not all(c is None or isinstance(c, str | int | float | bool) for c in ch)
            ):
                raise InvalidInputError(f"knob {name!r}: choices must be a list of scalars")
            out[name] = ChoiceKnob(tuple(ch))
            continue
        lo: Any = spec.get("low")
        hi: Any = spec.get("high")
        log: Any = spec.get("log", False)
        if not (_is_int(lo) and _is_int(hi)) or lo > hi:
            raise InvalidInputError(f"knob {name!r}: low and high must be integers, low <= high")
        if not isinstance(log, bool):
            raise InvalidInputError(f"knob {name!r}: log must be true or false")
        if log and lo < 1:
            raise InvalidInputError(f"knob {name!r}: a log-scale knob needs low >= 1")
        out[name] = IntKnob(lo, hi, log)
    return out


@dataclass(frozen=True)
class StageInfo:
    """One stage, source first.

    ``sequential`` stages cannot run in parallel (a source reading one file, batching);
    ``random`` stages produce different output every epoch (random crop, shuffle), so
    nothing after them may be cached. ``parallelism_knob`` names the config key that sets
    this stage's parallelism, if any.
    """

    name: str
    kind: str = "map"  # source | map | filter | batch | shuffle | prefetch | collate
    sequential: bool = False
    random: bool = False
    parallelism_knob: str | None = None


@dataclass(frozen=True)
class StageStats:
    """What probes measured for one stage during one measurement window."""

    name: str
    elements_in: int
    elements_out: int
    wall_seconds: float  # time spent inside the stage's own code, summed over workers
    cpu_seconds: float  # thread CPU time inside the stage's own code, summed over workers
    bytes_out: int
    wait_seconds: float  # time the stage waited on its upstream
    queue_occupancy: float  # mean items waiting in the stage's output queue (0 if none)
    parallelism: int
    # Share of the stage's time that holds the GIL (serialized in its interpreter), from
    # replaying kept inputs in one and two threads (``probe.gil_share``); None: unknown or
    # not applicable (worker processes, tf.data's native ops, sources that are generators).
    gil_share: float | None = None


@dataclass(frozen=True)
class HostFacts:
    """What the host offers a pipeline: cores, free memory, source read bandwidth."""

    cores: int
    free_memory_bytes: int
    source_read_bytes_per_second: float | None = None


@dataclass(frozen=True)
class Measurement:
    """A short run of one configuration: output throughput plus per-stage stats."""

    config: Config
    samples_per_second: float
    batches: int
    samples: int
    wall_seconds: float
    stages: list[StageStats]
    host: HostFacts
    peak_rss_bytes: int = 0
    error: str | None = None
    # extensions (collectors side, compatible defaults):
    status: str = "ok"  # ok | timeout | error  (error/timeout: ``error`` says what happened)
    consumer_wait_seconds: float = 0.0  # time the consumer blocked waiting for batches
    process_cpu_seconds: float = 0.0  # CPU of the measuring process tree in the window
    # The consumer: every batch is materialized (each array copied once, as a host to
    # device transfer would) inside the window; its time and bytes.
    consumer_seconds: float = 0.0
    bytes_consumed: int = 0
    # Epochs: samples/s over the part of the first epoch inside the window (after the
    # warmup) and over everything after the first epoch (a cache serves those); None when
    # the window did not reach that far.
    first_epoch_samples_per_second: float | None = None
    steady_samples_per_second: float | None = None
    epochs_completed: int = 0
    first_batch_seconds: float | None = None  # from the first next() to the first batch
    # the consumer's best copy of one batch (the last one, copied again warm, min of 5)
    consumer_best_seconds_per_batch: float | None = None
    # GIL share of the consumer's copy when it shares one interpreter with the stages
    # (thread engines; None otherwise), and what the GIL check cost (seconds, after the
    # window: not in any rate)
    consumer_gil_share: float | None = None
    gil_check_seconds: float = 0.0
    # The engine's own hand-off, probed in profiles (``Engine.delivery_costs``): the
    # consumer thread's CPU per batch to receive a batch from a worker process and copy
    # it (DataLoader: unpickling, shared-memory pages touched for the first time), and a
    # worker pool's start-up (iter() to the first batch); None where not probed.
    delivery_seconds_per_batch: float | None = None
    worker_startup_seconds: float | None = None


class ProbeSink(Protocol):
    """Where adapters report stage events; :mod:`placer.collectors.pipeline.probe` implements it."""

    def stage(self, name: str) -> Any: ...


@dataclass
class PipelineDef:
    """A pipeline the tuner can build under any config from ``knobs``.

    ``build(config, probes)`` returns an iterable of batches; ``probes`` is None when
    measuring without probes (for probe-overhead benchmarks). ``batch_size`` converts
    batches to samples. ``naive_config`` is the misconfigured starting point users often
    run (no workers, no prefetch, no cache); ``materialized_bytes`` estimates, per stage,
    how much memory caching that stage's full output takes (filled in by profiling).
    """

    name: str
    engine: str  # torchdata | dataloader | tfdata | python
    stages: list[StageInfo]
    knobs: Mapping[str, Knob]
    build: Callable[[Config, ProbeSink | None], Iterable[Any]]
    batch_size: int
    naive_config: Config
    dataset_samples: int
    materialized_bytes: dict[str, int] = field(default_factory=dict)
    description: str = ""
    # extension: a path or http(s) URL that host_facts() reads to measure source bandwidth
    source: str | None = None
    # extension: what the analysis cannot see in this pipeline (a user's own loader tuned
    # as it is), said with its explanation
    notes: list[str] = field(default_factory=list)
