"""A training job's epoch loop that lets a tuner (the placer daemon) tune its input pipeline.

A job builds its pipeline from a :class:`~placer.contracts.pipeline.PipelineDef` (an
example name or its own, see ``registry.load_pipeline``) and a config, and calls
:func:`run_epochs`. Each ``iter()`` of the built pipeline is an epoch; the end of an epoch
is the safe point. There the loop reports the epoch's samples/s and its stage metrics to
the job's :class:`EpochAgent` and gets the knobs to run next; when they differ from the
config in force, the pipeline is rebuilt with them before the next epoch.

The agent is passed in (``attach``), so this loop knows no daemon: a job attached to the
placer daemon passes :class:`placer.daemon.client.PipelineAgent` (with its socket), as
``examples/pipelines/train_job.py`` does:

    from functools import partial

    from placer.collectors.pipeline.epochs import run_epochs
    from placer.collectors.pipeline.registry import load_pipeline
    from placer.daemon.client import PipelineAgent

    defn = load_pipeline("remote-dataloader")
    for e in run_epochs(defn, defn.naive_config, epochs=12, step=train_step,
                        attach=partial(PipelineAgent, path=None)):
        print(e.index, e.samples_per_second, e.config, e.next_config)

Without an agent (``attach`` is None, or it raises a ``PlacerError``: nothing answers on
the socket, the daemon refuses the job) the job runs every epoch with its own config and
says why once. Only the knobs in ``tune`` are offered: by default the integer knobs
(parallelism, ``num_workers``, prefetch), whose effect shows within one epoch; a cache or
``persistent_workers`` pays off only across epochs, and a rebuild starts them cold.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from placer.collectors.pipeline.adapters import engine_named
from placer.collectors.pipeline.measure import batch_samples
from placer.collectors.pipeline.probe import Probes
from placer.contracts.pipeline import (
    Config,
    IntKnob,
    PipelineDef,
    StageStats,
    WireSpace,
    to_wire,
)
from placer.errors import InvalidInputError, PlacerError

Say = Callable[[str], None]


class EpochAgent(Protocol):
    """The job's link to whoever tunes it (:class:`placer.daemon.client.PipelineAgent`).

    ``report`` gets an epoch's samples/s, its stage stats (``StageStats`` fields as dicts)
    and batch count, and returns the knobs to run next, or None when the tuner is away
    (keep the current ones); it raises ``PlacerError`` when the tuner refuses the report.
    """

    def applied(self, knobs: dict[str, Any]) -> None: ...

    def report(
        self,
        samples_per_second: float,
        stages: list[dict[str, Any]] | None = None,
        batches: int = 0,
    ) -> dict[str, Any] | None: ...

    def close(self) -> None: ...


#: Makes the agent: called once with (job name, knob space in wire form, knobs in force);
#: raises ``PlacerError`` when no tuner takes the job.
Attach = Callable[[str, WireSpace, Config], EpochAgent]


@dataclass
class Epoch:
    """One finished epoch: what ran, what it delivered, and what runs next."""

    index: int  # 0-based
    config: Config  # the config in force during this epoch
    samples: int
    batches: int
    seconds: float  # wall time from the first ``next()`` to the last batch's step
    samples_per_second: float
    stages: list[StageStats] = field(default_factory=list)
    next_config: Config = field(default_factory=dict)  # what the next epoch runs
    daemon: bool = False  # the tuner (daemon) answered this epoch's report

    @property
    def changed(self) -> bool:
        return self.next_config != self.config


def knob_space(defn: PipelineDef, names: Sequence[str] | None = None) -> WireSpace:
    """The knob space offered to the tuner, in wire form (``placer.contracts.pipeline.to_wire``).

    ``names``: the knobs to offer (unknown names raise ``InvalidInputError``); default:
    every integer knob of the def.
    """
    if names is None:
        names = [k for k, v in defn.knobs.items() if isinstance(v, IntKnob)]
    unknown = sorted(set(names) - set(defn.knobs))
    if unknown:
        raise InvalidInputError(
            f"{defn.name}: no knob(s) {', '.join(unknown)}; it has {', '.join(sorted(defn.knobs))}"
        )
    if not names:
        raise InvalidInputError(f"{defn.name}: no knobs to tune")
    return to_wire({name: defn.knobs[name] for name in names})


class _Link:
    """The job's link to its agent, or the reason there is none (said once)."""

    def __init__(
        self, attach: Attach | None, name: str, space: WireSpace, knobs: Config, say: Say
    ) -> None:
        self.say = say
        self.agent: EpochAgent | None = None
        self.lost = False
        if attach is None:
            return
        try:
            self.agent = attach(name, space, knobs)
        except PlacerError as exc:
            say(f"no daemon tunes this job ({exc}); running with the job's own config")

    def report(
        self, rate: float, stages: list[StageStats], batches: int, knobs: Config
    ) -> Config | None:
        if self.agent is None:
            return None
        self.agent.applied(knobs)
        docs = [dataclasses.asdict(s) for s in stages]
        try:
            new = self.agent.report(rate, stages=docs, batches=batches)
        except PlacerError as exc:  # refused: the job was detached, or a bad report
            if not self.lost:
                self.say(f"the daemon refused the report ({exc}); keeping the current config")
            self.lost = True
            return None
        if new is None:
            if not self.lost:
                self.say("the daemon stopped answering; keeping the current config")
            self.lost = True
        return new

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()


def run_epochs(
    defn: PipelineDef,
    config: Config,
    epochs: int,
    *,
    step: Callable[[Any], Any] | None = None,
    tune: Sequence[str] | None = None,
    name: str | None = None,
    attach: Attach | None = None,
    say: Say | None = None,
    steps_per_epoch: int | None = None,
) -> Iterator[Epoch]:
    """Run ``epochs`` epochs of ``defn`` starting from ``config``; yields each finished one.

    ``step(batch)`` is the job's training step (the time it takes counts in the epoch's
    samples/s, as it does for a real job). ``tune``: the knobs the daemon may change (see
    :func:`knob_space`); ``name``: the job's name in ``placer jobs`` (default the def's);
    ``attach``: makes the job's :class:`EpochAgent` (default: none, the job keeps its
    config); ``say``: where the one-line notes about the tuner go (default: nowhere);
    ``steps_per_epoch``: end an epoch after that many batches (as Keras'
    ``steps_per_epoch``; default: the whole data).
    """
    if epochs < 1:
        raise InvalidInputError(f"epochs must be >= 1, got {epochs}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise InvalidInputError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    note: Say = say or (lambda _msg: None)
    current: Config = {**defn.naive_config, **config}
    space = knob_space(defn, tune)
    link = _Link(attach, name or defn.name, space, {k: current.get(k) for k in space}, note)
    engine = engine_named(defn.engine)
    pipeline: Any = None
    probes: Probes | None = None
    try:
        for index in range(epochs):
            if pipeline is None:
                probes = Probes(s.name for s in defn.stages)
                pipeline = defn.build(current, probes)
            assert probes is not None
            since = probes.snapshot()
            samples = batches = 0
            t0 = time.perf_counter()
            it = iter(pipeline)
            try:
                for batch in it:
                    if step is not None:
                        step(batch)
                    samples += batch_samples(batch, defn.batch_size)
                    batches += 1
                    if steps_per_epoch is not None and batches >= steps_per_epoch:
                        break
            finally:
                close = getattr(it, "close", None)
                if close is not None:  # stops the epoch's workers/threads now
                    close()
            seconds = time.perf_counter() - t0
            stages = probes.stats(since, parallelism=engine.stage_parallelism(defn, current))
            rate = samples / seconds if seconds > 0 else 0.0
            new = link.report(rate, stages, batches, {k: current.get(k) for k in space})
            nxt = dict(current)
            if new is not None:
                nxt.update({k: v for k, v in new.items() if k in space})
            epoch = Epoch(
                index=index,
                config=dict(current),
                samples=samples,
                batches=batches,
                seconds=seconds,
                samples_per_second=rate,
                stages=stages,
                next_config=nxt,
                daemon=new is not None,
            )
            if nxt != current and index + 1 < epochs:
                fresh = Probes(s.name for s in defn.stages)
                try:
                    rebuilt = defn.build(nxt, fresh)
                except PlacerError as exc:  # the daemon's knobs do not build: keep ours
                    note(f"cannot apply the daemon's knobs ({exc}); keeping the current config")
                    epoch.next_config = dict(current)
                else:
                    pipeline, probes, current = rebuilt, fresh, nxt
            yield epoch
    finally:
        link.close()
