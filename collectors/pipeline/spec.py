"""Engine-neutral pipeline specs: one description, a ``PipelineDef`` per engine.

A :class:`PipelineSpec` is a list of items (file paths, shard URLs, ...), a *source*
stage that loads one item, per-element *map* stages, an implicit *batch* stage that
groups ``batch_size`` elements, and one *collate* stage that turns a list of elements into
a batch. That shape covers the example pipelines and most user jobs, and lets the same
Python functions run under plain Python threads, torchdata.nodes and PyTorch DataLoader,
so engines are compared on identical work.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.pipeline.api import ChoiceKnob, Config, IntKnob, Knob, PipelineDef, StageInfo

ENGINES = ("python", "torchdata", "dataloader")
BATCH_STAGE = "batch"


@dataclass(frozen=True)
class StageSpec:
    """One stage's code. ``fn`` maps one element (a list of elements for ``collate``).

    ``parallel`` stages get a ``parallelism.<name>`` knob in ``[1, max_parallelism]``
    (``None``: twice the host's cores, at least 4); ``io`` marks stages that mostly wait
    (network, disk) and so profit from more threads than cores.
    """

    name: str
    fn: Callable[[Any], Any]
    kind: str = "map"  # source | map | collate
    random: bool = False
    parallel: bool = True
    max_parallelism: int | None = None


@dataclass
class PipelineSpec:
    """Items, stages (source first, collate last) and the batch size of a pipeline."""

    name: str
    items: Callable[[], Sequence[Any]]
    stages: list[StageSpec]
    batch_size: int
    description: str = ""
    source: str | None = None  # a path or URL host_facts() reads to measure bandwidth
    materialized_bytes: dict[str, int] = field(default_factory=dict)
    max_workers: int | None = None  # DataLoader num_workers upper bound
    samples_per_element: int = 1  # e.g. a chunk of 1024 rows is 1024 samples

    def __post_init__(self) -> None:
        if not self.stages or self.stages[0].kind != "source":
            raise ValueError(f"{self.name}: the first stage must be a source")
        if self.stages[-1].kind != "collate":
            raise ValueError(f"{self.name}: the last stage must be a collate")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names) or BATCH_STAGE in names:
            raise ValueError(f"{self.name}: stage names must be unique and not {BATCH_STAGE!r}")
        if self.batch_size < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1")

    @property
    def element_stages(self) -> list[StageSpec]:
        """Source and map stages (everything before the batch)."""
        return self.stages[:-1]

    @property
    def collate(self) -> StageSpec:
        return self.stages[-1]

    def stage_names(self) -> list[str]:
        """Probe names in pipeline order, the implicit batch stage included."""
        return [s.name for s in self.element_stages] + [BATCH_STAGE, self.collate.name]

    def cacheable(self, *, per_element_only: bool = False) -> list[str]:
        """Stages whose output may be cached: at or before the first random stage, never after.

        A random stage's own output is not cacheable either (it must change each epoch).
        """
        out: list[str] = []
        for s in self.stages:
            if s.random:
                break
            if s.kind == "collate" and per_element_only:
                break
            out.append(s.name)
        return out


def _default_max_parallelism() -> int:
    return max(4, 2 * len(os.sched_getaffinity(0)))


def stage_infos(spec: PipelineSpec, engine: str) -> list[StageInfo]:
    """The contract's view of a spec's stages for one engine."""
    infos = []
    for s in spec.element_stages:
        knob = f"parallelism.{s.name}" if engine != "dataloader" and s.parallel else None
        infos.append(
            StageInfo(
                name=s.name,
                kind=s.kind,
                sequential=not s.parallel,
                random=s.random,
                parallelism_knob=knob,
            )
        )
    infos.append(StageInfo(name=BATCH_STAGE, kind="batch", sequential=True))
    c = spec.collate
    infos.append(
        StageInfo(
            name=c.name,
            kind="collate",
            sequential=not c.parallel,
            random=c.random,
            parallelism_knob=(
                f"parallelism.{c.name}" if engine != "dataloader" and c.parallel else None
            ),
        )
    )
    return infos


def knobs(spec: PipelineSpec, engine: str) -> dict[str, Knob]:
    """The search space of a spec under one engine (see ``api`` for the key names)."""
    out: dict[str, Knob] = {}
    if engine == "dataloader":
        hi = spec.max_workers or _default_max_parallelism()
        out["num_workers"] = IntKnob(0, hi)
        out["prefetch_factor"] = IntKnob(1, 8)
        out["persistent_workers"] = ChoiceKnob((False, True))
        out["pin_memory"] = ChoiceKnob((False, True))
        out["cache"] = ChoiceKnob((None, *spec.cacheable(per_element_only=True)))
        return out
    for s in spec.stages:
        if s.parallel:
            out[f"parallelism.{s.name}"] = IntKnob(
                1, s.max_parallelism or _default_max_parallelism()
            )
    out["prefetch"] = IntKnob(0, 16)
    out["cache"] = ChoiceKnob((None, *spec.cacheable()))
    return out


def naive_config(spec: PipelineSpec, engine: str) -> Config:
    """No workers, no prefetch, no cache: what a misconfigured job runs."""
    if engine == "dataloader":
        return {
            "num_workers": 0,
            "prefetch_factor": 2,
            "persistent_workers": False,
            "pin_memory": False,
            "cache": None,
        }
    cfg: Config = {f"parallelism.{s.name}": 1 for s in spec.stages if s.parallel}
    cfg.update({"prefetch": 0, "cache": None})
    return cfg


def validate_config(spec: PipelineSpec, engine: str, config: Config) -> Config:
    """``config`` completed with naive defaults; unknown keys or bad values raise."""
    from placer.errors import InvalidInputError

    space = knobs(spec, engine)
    unknown = sorted(set(config) - set(space))
    if unknown:
        raise InvalidInputError(
            f"{spec.name} ({engine}): unknown config key(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(space))}"
        )
    full = naive_config(spec, engine)
    full.update(config)
    for key, knob in space.items():
        value = full[key]
        if isinstance(knob, IntKnob):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInputError(f"{spec.name}: {key} must be an integer, got {value!r}")
            # the upper bound is a search bound, not a limit; only the floor is hard
            if value < knob.low:
                raise InvalidInputError(f"{spec.name}: {key} must be >= {knob.low}, got {value}")
        elif value not in knob.choices:
            raise InvalidInputError(
                f"{spec.name}: {key} must be one of {list(knob.choices)}, got {value!r}"
            )
    return full


def pipeline_def(spec: PipelineSpec, engine: str) -> PipelineDef:
    """A ``PipelineDef`` that builds ``spec`` under ``engine``."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; one of {', '.join(ENGINES)}")

    def build(config: Config, probes: Any) -> Any:
        cfg = validate_config(spec, engine, config)
        if engine == "python":
            from collectors.pipeline.adapters.python_iter import build_python

            return build_python(spec, cfg, probes)
        if engine == "torchdata":
            from collectors.pipeline.adapters.torchdata_nodes import build_torchdata

            return build_torchdata(spec, cfg, probes)
        from collectors.pipeline.adapters.dataloader import build_dataloader_from_spec

        return build_dataloader_from_spec(spec, cfg, probes)

    return PipelineDef(
        name=f"{spec.name}-{engine}",
        engine=engine,
        stages=stage_infos(spec, engine),
        knobs=knobs(spec, engine),
        build=build,
        batch_size=spec.batch_size * spec.samples_per_element,
        naive_config=naive_config(spec, engine),
        dataset_samples=len(spec.items()) * spec.samples_per_element,
        materialized_bytes=dict(spec.materialized_bytes),
        description=spec.description,
        source=spec.source,
    )
