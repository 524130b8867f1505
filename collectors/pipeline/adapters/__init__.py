"""Engine adapters and their registry: one :class:`~placer.collectors.pipeline.engine.Engine` per name.

``python`` (threads), ``torchdata`` (torchdata.nodes), ``dataloader`` (PyTorch DataLoader)
build a :class:`~placer.collectors.pipeline.spec.PipelineSpec`; ``tfdata`` builds a ``TfSpec``
(:func:`placer.collectors.pipeline.adapters.tfdata.tf_pipeline_def`). Measuring and the epoch
loop look a ``PipelineDef``'s engine up here (:func:`engine_named`).
"""

from __future__ import annotations

from collections.abc import Mapping

from placer.collectors.pipeline.adapters.dataloader import DataLoaderEngine
from placer.collectors.pipeline.adapters.python_iter import PythonEngine
from placer.collectors.pipeline.adapters.tfdata import TfDataEngine
from placer.collectors.pipeline.adapters.torchdata_nodes import TorchdataEngine
from placer.collectors.pipeline.engine import Engine, SpecEngine
from placer.collectors.pipeline.spec import PipelineSpec
from placer.contracts.pipeline import PipelineDef

ENGINES: Mapping[str, Engine] = {
    e.name: e for e in (PythonEngine(), TorchdataEngine(), DataLoaderEngine(), TfDataEngine())
}

#: The engines that build a ``PipelineSpec`` (every example runs under each).
SPEC_ENGINES: tuple[str, ...] = tuple(n for n, e in ENGINES.items() if isinstance(e, SpecEngine))


def engine_named(name: str) -> Engine:
    """The registered engine, or a plain :class:`Engine` for a name placer does not know."""
    found = ENGINES.get(name)
    return found if found is not None else Engine(name)


def spec_engine(name: str) -> SpecEngine:
    """The engine that builds specs under ``name``; ``ValueError`` for any other name."""
    found = ENGINES.get(name)
    if not isinstance(found, SpecEngine):
        raise ValueError(f"unknown engine {name!r}; one of {', '.join(SPEC_ENGINES)}")
    return found


def pipeline_def(spec: PipelineSpec, engine: str) -> PipelineDef:
    """A ``PipelineDef`` that builds ``spec`` under ``engine`` (one of :data:`SPEC_ENGINES`)."""
    return spec_engine(engine).pipeline_def(spec)
