"""A training job's epoch loop that lets the placer daemon tune its input pipeline.

A job builds its pipeline from a :class:`~collectors.pipeline.api.PipelineDef` (an example
name or its own, see ``registry.load_pipeline``) and a config, and calls :func:`run_epochs`.
Each ``iter()`` of the built pipeline is an epoch; the end of an epoch is the safe point.
There the loop reports the epoch's samples/s and its stage metrics to the daemon
(:class:`placer.daemon.client.PipelineAgent`, over the daemon's Unix socket) and gets the
knobs to run next; when they differ from the config in force, the pipeline is rebuilt
with them before the next epoch.

    from collectors.pipeline.epochs import run_epochs
    from collectors.pipeline.registry import load_pipeline

    defn = load_pipeline("remote-dataloader")
    for e in run_epochs(defn, defn.naive_config, epochs=12, step=train_step):
        print(e.index, e.samples_per_second, e.config, e.next_config)

Without a daemon (nothing answers on the socket, it refuses the job, or
``PLACER_DAEMON=off``) the job runs every epoch with its own config and says why once.
Only the knobs in ``tune`` are offered to the daemon: by default the integer knobs
(parallelism, ``num_workers``, prefetch), whose effect shows within one epoch; a cache or
``persistent_workers`` pays off only across epochs, and a rebuild starts them cold.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.pipeline.api import ChoiceKnob, Config, IntKnob, PipelineDef, StageStats
from collectors.pipeline.measure import batch_samples
from collectors.pipeline.probe import Probes

Say = Callable[[str], None]


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
    daemon: bool = False  # the daemon answered this epoch's report

    @property
    def changed(self) -> bool:
        return self.next_config != self.config


def knob_space(defn: PipelineDef, names: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """The daemon protocol's knob space (``{"k": {"low", "high"} | {"choices"}}``) of a def.

    ``names``: the knobs to offer (unknown names raise ``InvalidInputError``); default:
    every integer knob of the def.
    """
    from placer.errors import InvalidInputError

    if names is None:
        names = [k for k, v in defn.knobs.items() if isinstance(v, IntKnob)]
    unknown = sorted(set(names) - set(defn.knobs))
    if unknown:
        raise InvalidInputError(
            f"{defn.name}: no knob(s) {', '.join(unknown)}; it has {', '.join(sorted(defn.knobs))}"
        )
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        knob = defn.knobs[name]
        if isinstance(knob, IntKnob):
            out[name] = {"low": knob.low, "high": knob.high}
        elif isinstance(knob, ChoiceKnob):
            out[name] = {"choices": list(knob.choices)}
    if not out:
        raise InvalidInputError(f"{defn.name}: no knobs to tune")
    return out


def stage_parallelism(defn: PipelineDef, config: Config) -> dict[str, int]:
    """Each stage's parallelism under ``config`` (DataLoader: one pool for every stage)."""
    workers = max(1, int(config.get("num_workers") or 0))
    out: dict[str, int] = {}
    for s in defn.stages:
        if s.parallelism_knob:
            out[s.name] = int(config.get(s.parallelism_knob, 1))
        else:
            out[s.name] = workers if defn.engine == "dataloader" else 1
    return out


class _Daemon:
    """The job's link to the daemon, or the reason there is none (said once)."""

    def __init__(
        self,
        name: str,
        space: dict[str, dict[str, Any]],
        knobs: Config,
        socket: str | os.PathLike[str] | None,
        say: Say,
    ) -> None:
        from placer.daemon.client import REGISTER_ENV, PipelineAgent, socket_path
        from placer.errors import PlacerError

        self.say = say
        self.agent: PipelineAgent | None = None
        self.lost = False
        if os.environ.get(REGISTER_ENV, "auto").lower() in ("off", "0", "no", "false"):
            say(f"{REGISTER_ENV}=off: running with the job's own config")
            return
        try:
            self.agent = PipelineAgent(name, space, knobs, path=socket)
        except PlacerError as exc:
            say(f"no daemon tunes this job ({exc}); running with the job's own config")
            return
        say(
            f"daemon job {self.agent.job_id} tunes {', '.join(space)} "
            f"(socket {socket_path(socket)})"
        )

    def report(
        self, rate: float, stages: list[StageStats], batches: int, knobs: Config
    ) -> Config | None:
        if self.agent is None:
            return None
        from placer.errors import PlacerError

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
    socket: str | os.PathLike[str] | None = None,
    say: Say | None = None,
    steps_per_epoch: int | None = None,
) -> Iterator[Epoch]:
    """Run ``epochs`` epochs of ``defn`` starting from ``config``; yields each finished one.

    ``step(batch)`` is the job's training step (the time it takes counts in the epoch's
    samples/s, as it does for a real job). ``tune``: the knobs the daemon may change (see
    :func:`knob_space`); ``name``: the job's name in ``placer jobs`` (default the def's);
    ``socket``: the daemon's socket (default as ``placer daemon``); ``say``: where the
    one-line notes about the daemon go (default: nowhere); ``steps_per_epoch``: end an
    epoch after that many batches (as Keras' ``steps_per_epoch``; default: the whole data).
    """
    from placer.errors import InvalidInputError, PlacerError

    if epochs < 1:
        raise InvalidInputError(f"epochs must be >= 1, got {epochs}")
    if steps_per_epoch is not None and steps_per_epoch < 1:
        raise InvalidInputError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    note: Say = say or (lambda _msg: None)
    current: Config = {**defn.naive_config, **config}
    space = knob_space(defn, tune)
    link = _Daemon(name or defn.name, space, {k: current.get(k) for k in space}, socket, note)
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
            stages = probes.stats(since, parallelism=stage_parallelism(defn, current))
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
