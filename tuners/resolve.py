"""Find a pipeline definition and the measuring function for it.

``PIPELINE`` on the command line is one of the synthetic pipelines of
:mod:`placer.tuners.synthetic`, or anything the collectors' registry resolves (an example name,
see docs/pipelines.md, or ``package.module:function`` returning a
:class:`~placer.contracts.pipeline.PipelineDef`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from placer.collectors.pipeline import registry
from placer.collectors.pipeline.measure import measure
from placer.contracts.pipeline import PipelineDef
from placer.tuners.synthetic import SYNTHETIC

MeasureFn = Callable[..., Any]


def load_pipeline(spec: str) -> PipelineDef:
    """The :class:`PipelineDef` named by ``spec`` (a clear one-line error otherwise)."""
    if spec in SYNTHETIC:
        return SYNTHETIC[spec]()
    return registry.load_pipeline(spec)


def resolve_measure() -> MeasureFn:
    """The collectors' ``measure()``: each run in a forked child with a hard timeout."""
    return measure
