"""Engine-neutral pipeline specs: one description, a ``PipelineDef`` per engine.

A :class:`PipelineSpec` is a list of items (file paths, shard URLs, ...), a *source*
stage that loads one item, per-element *map* stages, an implicit *batch* stage that
groups ``batch_size`` elements, and one *collate* stage that turns a list of elements into
a batch. That shape covers the example pipelines and most user jobs, and lets the same
Python functions run under plain Python threads, torchdata.nodes and PyTorch DataLoader,
so engines are compared on identical work. An engine turns a spec into a ``PipelineDef``
(:meth:`placer.collectors.pipeline.engine.SpecEngine.pipeline_def`; by name:
:func:`placer.collectors.pipeline.adapters.pipeline_def`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BATCH_STAGE = "batch"  # the probe name of the implicit batch stage, in every engine


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
