"""torchdata.nodes engine: one node per stage with its own knobs.

source/map stages become ``ParallelMapper(num_workers=parallelism.<stage>)`` (a plain
``Mapper`` at 1), the batch stage a ``Batcher``, the collate stage a mapper over batches,
``prefetch`` a ``Prefetcher`` at the output. Every stage function is wrapped by its probe;
a small :class:`ProbeTap` node between stages records the time a stage's reader waits on
its upstream and how many finished elements sit between the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from placer.collectors.pipeline.adapters.python_iter import EpochCache
from placer.collectors.pipeline.engine import SpecEngine
from placer.collectors.pipeline.probe import Probes, StageProbe
from placer.collectors.pipeline.spec import BATCH_STAGE, PipelineSpec
from placer.contracts.pipeline import Config

_clock = time.perf_counter_ns


def _tap_node_class() -> type:
    from torchdata.nodes import BaseNode  # lazy: heavy

    class ProbeTap(BaseNode):  # type: ignore[misc,unused-ignore]  # torchdata is untyped
        """Pass-through node: counts what the downstream stage pulls and how long it waits.

        ``producer`` is the probe of the stage upstream (its ``elements_out`` so far minus
        what was pulled here is its output-queue occupancy); ``consumer`` is the probe of the
        stage reading from this tap (wait time is charged to it).
        """

        def __init__(
            self,
            source: Any,
            producer: StageProbe | None,
            consumer: StageProbe | None,
            probes: Probes,
        ) -> None:
            super().__init__()
            self.source = source
            self.producer = producer
            self.consumer = consumer
            self.probes = probes
            self.pulled = 0
            self.base = 0

        def reset(self, initial_state: dict[str, Any] | None = None) -> None:
            super().reset(initial_state)
            self.source.reset(initial_state.get("source") if initial_state else None)
            self.pulled = 0
            self.base = self.probes.produced(self.producer) if self.producer else 0

        def next(self) -> Any:
            t0 = _clock()
            x = next(self.source)
            if self.consumer is not None:
                self.consumer.waited(_clock() - t0)
            self.pulled += 1
            if self.producer is not None and self.pulled % 8 == 1:
                done = self.probes.produced(self.producer) - self.base
                self.producer.sample_queue(max(0, done - self.pulled))
            return x

        def get_state(self) -> dict[str, Any]:
            return {"source": self.source.state_dict()}

    return ProbeTap


def _cache_node_class() -> type:
    from torchdata.nodes import BaseNode  # lazy: heavy

    class CacheTap(BaseNode):  # type: ignore[misc,unused-ignore]  # torchdata is untyped
        """Records the stream into an :class:`EpochCache`; kept only if the epoch completes."""

        def __init__(self, source: Any, cache: EpochCache) -> None:
            super().__init__()
            self.source = source
            self.cache = cache
            self.filling: list[Any] = []

        def reset(self, initial_state: dict[str, Any] | None = None) -> None:
            super().reset(initial_state)
            self.source.reset(initial_state.get("source") if initial_state else None)
            self.filling = []

        def next(self) -> Any:
            try:
                x = next(self.source)
            except StopIteration:
                self.cache.elements = self.filling
                raise
            self.filling.append(x)
            return x

        def get_state(self) -> dict[str, Any]:
            return {"source": self.source.state_dict()}

    return CacheTap


class TorchdataPipeline:
    """Re-iterable: each ``iter()`` builds the node graph for one epoch."""

    def __init__(self, spec: PipelineSpec, config: Config, probes: Probes | None) -> None:
        self.spec = spec
        self.config = config
        self.probes = probes
        self.cache = EpochCache(config.get("cache"))
        if probes is not None:
            for name in spec.stage_names():
                probes.stage(name)

    def graph(self) -> Any:
        """The torchdata.nodes graph of one epoch (root node)."""
        import torchdata.nodes as tn  # lazy: heavy

        tap_cls = _tap_node_class()
        spec, probes, cache = self.spec, self.probes, self.cache
        stages = list(spec.stages)
        if cache.stage is not None and cache.ready:
            assert cache.elements is not None
            node: Any = tn.IterableWrapper(cache.elements)
            names = [s.name for s in stages]
            stages = stages[names.index(cache.stage) + 1 :]
            tapped = True
        else:
            node = tn.IterableWrapper(spec.items())
            tapped = False
        prev: StageProbe | None = None

        def probe(name: str) -> StageProbe | None:
            return probes.stage(name) if probes is not None else None

        def link(node: Any, consumer: str) -> Any:
            if probes is None:
                return node
            return tap_cls(node, prev, probe(consumer), probes)

        batched = False
        for s in stages:
            if s.kind == "collate" and not batched:
                node = tn.Batcher(link(node, BATCH_STAGE), spec.batch_size, drop_last=False)
                if probes is not None:
                    node = tn.Mapper(node, _BatchCounter(probe(BATCH_STAGE)))
                prev = probe(BATCH_STAGE)
                batched = True
            fn: Callable[[Any], Any] = probes.wrap(s.name, s.fn) if probes is not None else s.fn
            par = int(self.config.get(f"parallelism.{s.name}", 1)) if s.parallel else 1
            upstream = link(node, s.name)
            if par > 1:
                node = tn.ParallelMapper(upstream, fn, num_workers=par, in_order=True)
            else:
                node = tn.Mapper(upstream, fn)
            prev = probe(s.name)
            if not tapped and s.name == cache.stage:
                node = _cache_node_class()(node, cache)
                tapped = True
        depth = int(self.config.get("prefetch", 0))
        if depth > 0:
            node = tn.Prefetcher(node, prefetch_factor=depth)
        return node

    def __iter__(self) -> Iterator[Any]:
        import torchdata.nodes as tn  # lazy: heavy

        return iter(tn.Loader(self.graph()))


class _BatchCounter:
    """Counts batches leaving the Batcher (the Batcher's own time is not observable)."""

    def __init__(self, probe: StageProbe | None) -> None:
        self.probe = probe

    def __call__(self, batch: list[Any]) -> list[Any]:
        if self.probe is not None:
            self.probe.record(n_in=len(batch), n_out=1)
        return batch


class TorchdataEngine(SpecEngine):
    """torchdata.nodes: a node per stage with its own workers (threads of this interpreter)."""

    name = "torchdata"
    shares_gil = True

    def preload(self) -> None:
        import torch.utils.data  # noqa: F401  # lazy: heavy
        import torchdata.nodes  # noqa: F401  # lazy: heavy

    def build(self, spec: PipelineSpec, config: Config, probes: Probes | None) -> TorchdataPipeline:
        return TorchdataPipeline(spec, config, probes)
