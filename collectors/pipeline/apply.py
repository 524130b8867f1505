"""Build a job's input pipeline from a tuned configuration (what ``placer tune`` writes).

A config file is JSON: either the flat config (``{"num_workers": 2, ...}``) or an object
with the flat config under ``"config"`` (other keys, e.g. the pipeline name, throughput and
study, are ignored here). Keys are those of ``placer.contracts.pipeline``.

    from collectors.pipeline.apply import build_dataloader, build_nodes, staged_dataset

    loader = build_dataloader(my_dataset, "tuned.json", batch_size=64)
    # or, with per-stage knobs and cache (torchdata.nodes):
    loader = build_nodes(paths, [("read", read), ("decode", decode)], "tuned.json",
                         batch_size=64, collate_fn=collate)
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from collectors.pipeline.adapters import spec_engine
from collectors.pipeline.adapters.dataloader import ProbedDataset, make_dataloader
from collectors.pipeline.adapters.torchdata_nodes import TorchdataPipeline
from collectors.pipeline.probe import Probes
from collectors.pipeline.spec import PipelineSpec, StageSpec
from placer.contracts.pipeline import Config
from placer.errors import InvalidInputError

DATALOADER_KEYS = ("num_workers", "prefetch_factor", "persistent_workers", "pin_memory", "cache")


def load_config(config: str | os.PathLike[str] | dict[str, Any]) -> Config:
    """A flat config from a dict or a JSON file (bad files raise ``InvalidInputError``)."""
    if isinstance(config, dict):
        data: Any = config
    else:
        path = Path(config)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise InvalidInputError(f"cannot read pipeline config {path}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"pipeline config {path} is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise InvalidInputError("a pipeline config is a JSON object of knob names to values")
    return dict(data)


def _check_int(cfg: Config, key: str, low: int) -> None:
    value = cfg.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidInputError(
            f"pipeline config: {key} must be an integer >= {low}, got {value!r}"
        )


def _stage_specs(stages: Sequence[tuple[str, Callable[[Any], Any]] | StageSpec]) -> list[StageSpec]:
    out = []
    for i, s in enumerate(stages):
        if isinstance(s, StageSpec):
            out.append(s)
        else:
            name, fn = s
            out.append(StageSpec(name, fn, kind="source" if i == 0 else "map"))
    return out


def staged_dataset(
    items: Sequence[Any],
    stages: Sequence[tuple[str, Callable[[Any], Any]] | StageSpec],
    *,
    cache_after: str | None = None,
    probes: Probes | None = None,
) -> Any:
    """A map-style torch ``Dataset``: item ``i`` through named stages (cacheable by name)."""
    from torch.utils.data import Dataset  # lazy: heavy

    cls = type("StagedDataset", (ProbedDataset, Dataset), {})
    return cls(items, _stage_specs(stages), probes, cache_after)


def build_dataloader(
    dataset: Any,
    config: str | os.PathLike[str] | dict[str, Any],
    *,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    probes: Probes | None = None,
    **kwargs: Any,
) -> Any:
    """A ``torch.utils.data.DataLoader`` over ``dataset`` with the tuned DataLoader knobs.

    ``cache`` needs a dataset from :func:`staged_dataset` (it names one of its stages);
    other keys of the config (per-stage parallelism of other engines) are rejected.
    """
    cfg = load_config(config)
    unknown = sorted(set(cfg) - set(DATALOADER_KEYS))
    if unknown:
        raise InvalidInputError(
            f"pipeline config has key(s) {', '.join(unknown)} that a DataLoader cannot use "
            f"(it knows {', '.join(DATALOADER_KEYS)})"
        )
    _check_int(cfg, "num_workers", 0)
    _check_int(cfg, "prefetch_factor", 1)
    cache = cfg.get("cache")
    if cache is not None:
        if not isinstance(dataset, ProbedDataset):
            raise InvalidInputError(
                f"config caches after stage {cache!r}: build the dataset with staged_dataset()"
            )
        names = [s.name for s in dataset.stages]
        if cache not in names:
            raise InvalidInputError(f"config caches after {cache!r}, not a stage of {names}")
        dataset.cache_after = cache
        dataset._cache_pos = names.index(cache)
    if collate_fn is None:
        from torch.utils.data import default_collate  # lazy: heavy

        collate_fn = default_collate
    return make_dataloader(
        dataset, batch_size=batch_size, collate_fn=collate_fn, config=cfg, probes=probes, **kwargs
    )


def build_nodes(
    items: Sequence[Any],
    stages: Sequence[tuple[str, Callable[[Any], Any]] | StageSpec],
    config: str | os.PathLike[str] | dict[str, Any],
    *,
    batch_size: int,
    collate_fn: Callable[[list[Any]], Any],
    probes: Probes | None = None,
) -> Any:
    """A re-iterable torchdata.nodes pipeline (each ``iter()`` is an epoch) with the tuned
    per-stage parallelism, output prefetch and cache."""
    specs = [*_stage_specs(stages), StageSpec("collate", collate_fn, kind="collate")]
    spec = PipelineSpec(name="job", items=lambda: items, stages=specs, batch_size=batch_size)
    cfg = spec_engine("torchdata").validate_config(spec, load_config(config))
    return TorchdataPipeline(spec, cfg, probes)
