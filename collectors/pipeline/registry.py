"""Resolve a pipeline name: an example (``images-torchdata``) or a user's ``module:function``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from placer.collectors.pipeline.adapters.user import user_pipeline_def
from placer.contracts.pipeline import PipelineDef
from placer.errors import InvalidInputError, NotFoundError, PlacerError, said

REPO_ROOT = Path(__file__).resolve().parents[2]


def examples() -> dict[str, Callable[[], PipelineDef]]:
    """The example registry (``examples.pipelines.registry()``), or {} if not shipped.

    The examples live in the source tree, not in the wheel; from a checkout (editable
    install) the repository root is put on ``sys.path`` to import them.
    """
    try:
        mod = importlib.import_module("examples.pipelines")
    except ImportError:
        if not (REPO_ROOT / "examples" / "pipelines" / "__init__.py").exists():
            return {}
        sys.path.insert(0, str(REPO_ROOT))
        sys.modules.pop("examples", None)
        try:
            mod = importlib.import_module("examples.pipelines")
        except ImportError:
            return {}
    return dict(mod.registry())


def example_names() -> list[str]:
    return sorted(examples())


def load_pipeline(name: str) -> PipelineDef:
    """The ``PipelineDef`` named by ``name``; a one-line :class:`PlacerError` otherwise.

    ``name`` is an example name (see :func:`example_names`) or ``package.module:function``
    where the function takes no arguments and returns a ``PipelineDef`` or a loader of its
    own (a DataLoader, ``(dataset, kwargs)``, a tf.data.Dataset, a torchdata.nodes node:
    :mod:`placer.collectors.pipeline.adapters.user` tunes it as it is).
    """
    if ":" not in name:
        found = examples()
        factory = found.get(name)
        if factory is None:
            raise NotFoundError(
                f"unknown pipeline {name!r}: use an example ({', '.join(sorted(found))}) "
                "or package.module:function"
            )
        try:
            return factory()
        except PlacerError:
            raise
        except Exception as exc:  # noqa: BLE001 - data generation failed: say so in one line
            raise InvalidInputError(
                f"example pipeline {name} could not be built: {said(exc)}"
            ) from None
    module_name, _, func_name = name.partition(":")
    if not module_name or not func_name:
        raise InvalidInputError(f"pipeline {name!r}: expected package.module:function")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's module
        raise InvalidInputError(
            f"pipeline module {module_name!r} does not import: {said(exc)}"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InvalidInputError(f"pipeline module {module_name!r} has no function {func_name!r}")
    try:
        defn = func()
    except PlacerError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidInputError(f"pipeline builder {name} raised {said(exc)}") from None
    return user_pipeline_def(name, defn)
