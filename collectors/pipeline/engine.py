"""What placer needs to know about a pipeline engine: the contract its adapters implement.

A ``PipelineDef`` names its engine (``PipelineDef.engine``); measuring, running epochs and
building from a :class:`~placer.collectors.pipeline.spec.PipelineSpec` ask the engine object
registered under that name (:mod:`placer.collectors.pipeline.adapters`) instead of branching on
the string. Each adapter implements it once:

- :class:`Engine`: what running a built pipeline needs: import the library ahead of
  forked trials (:meth:`Engine.preload`), whether stages and the consumer share one GIL
  (:attr:`Engine.shares_gil`), and how many workers each stage runs on under a config
  (:meth:`Engine.stage_parallelism`). A name no adapter registers (a user's own engine)
  gets a plain ``Engine(name)``: nothing preloaded, no GIL check, one worker per stage
  unless its knob says otherwise.
- :class:`SpecEngine`: an engine that builds a ``PipelineSpec``: its knobs, its naive
  config, and :meth:`SpecEngine.build`; the ``PipelineDef`` of a spec follows from those.

Heavy libraries (torch, torchdata, tensorflow) are imported only inside the adapters'
methods, so importing the registry costs nothing.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from placer.collectors.pipeline.probe import Probes
from placer.collectors.pipeline.spec import BATCH_STAGE, PipelineSpec
from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, Knob, PipelineDef, StageInfo
from placer.errors import InvalidInputError


def usable_cores() -> int:
    """CPUs this process may run on (its affinity mask, as PyTorch's DataLoader counts them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_max_parallelism() -> int:
    """The upper end of a parallelism knob a stage does not bound: twice the cores, >= 4."""
    return max(4, 2 * usable_cores())


class Engine:
    """One engine as measuring and running need it (the defaults fit an unknown engine)."""

    #: the ``PipelineDef.engine`` string
    name: str = ""
    #: stages and the consumer are threads of one interpreter (one GIL between them)
    shares_gil: bool = False
    #: each parallel stage has its own ``parallelism.<stage>`` knob; False: one pool of
    #: workers runs every stage (:meth:`pool_size`)
    per_stage_parallelism: bool = True

    def __init__(self, name: str | None = None) -> None:
        if name is not None:
            self.name = name

    def delivery_costs(self, batch: Any, consume: Callable[[Any], Any]) -> dict[str, float]:
        """The engine's own costs between its workers and the consumer, probed with one of
        the pipeline's batches, each received batch passed to ``consume`` (the measuring
        consumer's copy) (``Measurement.delivery_seconds_per_batch``,
        ``worker_startup_seconds``); {} for engines without a worker hand-off to probe."""
        return {}

    def preload(self) -> None:
        """Import the engine's library now, so each forked trial does not pay for it.

        Raises ``ImportError`` when the library is missing (the trial then reports it).
        """

    def pool_size(self, config: Config) -> int:
        """Workers a stage without its own parallelism knob runs on under ``config``."""
        return 1

    def stage_parallelism(self, defn: PipelineDef, config: Config) -> dict[str, int]:
        """Each stage's workers under ``config``: its knob's value, else :meth:`pool_size`."""
        out: dict[str, int] = {}
        for s in defn.stages:
            if s.parallelism_knob and s.parallelism_knob in config:
                out[s.name] = int(config[s.parallelism_knob])
            else:
                out[s.name] = self.pool_size(config)
        return out


class SpecEngine(Engine, ABC):
    """An engine that builds a :class:`PipelineSpec`; its ``PipelineDef`` follows.

    Subclasses implement :meth:`build`; the default knobs (per-stage parallelism, output
    prefetch, cache after any cacheable stage) fit engines with a worker pool per stage.
    """

    @abstractmethod
    def build(self, spec: PipelineSpec, config: Config, probes: Probes | None) -> Iterable[Any]:
        """A re-iterable pipeline (each ``iter()`` one epoch) under a validated ``config``."""

    def knobs(self, spec: PipelineSpec) -> dict[str, Knob]:
        """The search space of ``spec`` (see ``placer.contracts.pipeline`` for the keys)."""
        out: dict[str, Knob] = {}
        for s in spec.stages:
            if s.parallel:
                out[f"parallelism.{s.name}"] = IntKnob(
                    1, s.max_parallelism or default_max_parallelism()
                )
        out["prefetch"] = IntKnob(0, 16)
        out["cache"] = ChoiceKnob((None, *spec.cacheable()))
        return out

    def naive_config(self, spec: PipelineSpec) -> Config:
        """No workers, no prefetch, no cache: what a misconfigured job runs."""
        cfg: Config = {f"parallelism.{s.name}": 1 for s in spec.stages if s.parallel}
        cfg.update({"prefetch": 0, "cache": None})
        return cfg

    def stage_infos(self, spec: PipelineSpec) -> list[StageInfo]:
        """The contract's view of the spec's stages, the implicit batch stage included."""

        def info(s: Any, kind: str) -> StageInfo:
            own = self.per_stage_parallelism and s.parallel
            return StageInfo(
                name=s.name,
                kind=kind,
                sequential=not s.parallel,
                random=s.random,
                parallelism_knob=f"parallelism.{s.name}" if own else None,
            )

        infos = [info(s, s.kind) for s in spec.element_stages]
        infos.append(StageInfo(name=BATCH_STAGE, kind="batch", sequential=True))
        infos.append(info(spec.collate, "collate"))
        return infos

    def validate_config(self, spec: PipelineSpec, config: Config) -> Config:
        """``config`` completed with naive defaults; unknown keys or bad values raise."""
        space = self.knobs(spec)
        unknown = sorted(set(config) - set(space))
        if unknown:
            raise InvalidInputError(
                f"{spec.name} ({self.name}): unknown config key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(space))}"
            )
        full = self.naive_config(spec)
        full.update(config)
        for key, knob in space.items():
            value = full[key]
            if isinstance(knob, IntKnob):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise InvalidInputError(f"{spec.name}: {key} must be an integer, got {value!r}")
                # the upper bound is a search bound, not a limit; only the floor is hard
                if value < knob.low:
                    raise InvalidInputError(
                        f"{spec.name}: {key} must be >= {knob.low}, got {value}"
                    )
            elif value not in knob.choices:
                raise InvalidInputError(
                    f"{spec.name}: {key} must be one of {list(knob.choices)}, got {value!r}"
                )
        return full

    def pipeline_def(self, spec: PipelineSpec) -> PipelineDef:
        """A ``PipelineDef`` that builds ``spec`` under this engine."""

        def build(config: Config, probes: Any) -> Iterable[Any]:
            return self.build(spec, self.validate_config(spec, config), probes)

        return PipelineDef(
            name=f"{spec.name}-{self.name}",
            engine=self.name,
            stages=self.stage_infos(spec),
            knobs=self.knobs(spec),
            build=build,
            batch_size=spec.batch_size * spec.samples_per_element,
            naive_config=self.naive_config(spec),
            dataset_samples=len(spec.items()) * spec.samples_per_element,
            materialized_bytes=dict(spec.materialized_bytes),
            description=spec.description,
            source=spec.source,
        )
