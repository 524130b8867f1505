"""placer: ML-driven data placement for tiered memory and ML input-pipeline autotuning.

The Python API, for a training script::

    import placer

    loader = placer.build_dataloader(MyDataset(), "tuned.json", batch_size=64, shuffle=True)
    loader = placer.tuned_loader(make_loader(), "tuned.json")  # your own loader, tuned

``tuned.json`` is what ``placer tune PIPELINE -o tuned.json`` (or :func:`placer.tune`)
writes. Names are imported on first use, so ``import placer`` (and the CLI) stay fast;
errors a user can cause are :class:`PlacerError` subclasses with one-line messages.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from placer.errors import (
    ConfigError,
    ExternalToolError,
    InvalidInputError,
    NotFoundError,
    PlacerError,
    StoreError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (imported when the name is first used)
_LAZY = {
    "build_dataloader": "placer.collectors.pipeline.apply",
    "build_nodes": "placer.collectors.pipeline.apply",
    "build_tf_dataset": "placer.collectors.pipeline.apply",
    "staged_dataset": "placer.collectors.pipeline.apply",
    "load_config": "placer.collectors.pipeline.apply",
    "tuned_loader": "placer.collectors.pipeline.apply",
    "tune": "placer.api",
    "profile": "placer.api",
    "read_plan": "placer.api",
    "ProfileResult": "placer.api",
    "TuneResult": "placer.tuners.tuning",
    "PipelineDef": "placer.contracts.pipeline",
}

__all__ = [
    "ConfigError",
    "ExternalToolError",
    "InvalidInputError",
    "NotFoundError",
    "PipelineDef",
    "PlacerError",
    "ProfileResult",
    "StoreError",
    "TuneResult",
    "__version__",
    "build_dataloader",
    "build_nodes",
    "build_tf_dataset",
    "load_config",
    "profile",
    "read_plan",
    "staged_dataset",
    "tune",
    "tuned_loader",
]

if TYPE_CHECKING:
    from placer.api import ProfileResult, profile, read_plan, tune
    from placer.collectors.pipeline.apply import (
        build_dataloader,
        build_nodes,
        build_tf_dataset,
        load_config,
        staged_dataset,
        tuned_loader,
    )
    from placer.contracts.pipeline import PipelineDef
    from placer.tuners.tuning import TuneResult


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'placer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
