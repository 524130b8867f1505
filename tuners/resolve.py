"""Find a pipeline definition and the measuring function for it.

``PIPELINE`` on the command line is an example name (see docs/pipelines.md), one of the
synthetic pipelines of :mod:`tuners.synthetic`, or ``package.module:function`` returning a
:class:`~collectors.pipeline.api.PipelineDef`. The collectors' registry is used when it is
installed; this module only adds the synthetic names and a fallback with the same errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from collectors.pipeline.api import PipelineDef
from placer.errors import InvalidInputError, NotFoundError

MeasureFn = Callable[..., Any]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _from_reference(spec: str) -> PipelineDef:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise InvalidInputError(f"pipeline {spec!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module
        raise InvalidInputError(
            f"pipeline module {module_name!r} does not import: {_first_line(exc)}"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InvalidInputError(f"pipeline module {module_name!r} has no function {func_name!r}")
    try:
        defn = func()
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"pipeline builder {spec} raised {_first_line(exc)}") from None
    if not isinstance(defn, PipelineDef):
        raise InvalidInputError(
            f"pipeline builder {spec} returned {type(defn).__name__}, not a PipelineDef"
        )
    return defn


def load_pipeline(spec: str) -> PipelineDef:
    """The :class:`PipelineDef` named by ``spec`` (a clear one-line error otherwise)."""
    from tuners.synthetic import SYNTHETIC

    if spec in SYNTHETIC:
        return SYNTHETIC[spec]()
    try:
        registry = importlib.import_module("collectors.pipeline.registry")
    except ImportError:
        registry = None
    if registry is not None and hasattr(registry, "load_pipeline"):
        return registry.load_pipeline(spec)
    if ":" in spec:
        return _from_reference(spec)
    raise NotFoundError(
        f"unknown pipeline {spec!r}: use one of {', '.join(sorted(SYNTHETIC))} "
        f"or package.module:function"
    )


def resolve_measure() -> MeasureFn:
    """The collectors' ``measure()`` (hard per-run timeout), else the synthetic one."""
    try:
        from collectors.pipeline.measure import measure
    except ImportError:
        from tuners.synthetic import measure_synthetic

        return measure_synthetic
    return measure
