"""Build a job's input pipeline from a tuned configuration (what ``placer tune`` writes).

A config file is JSON: either the flat config (``{"num_workers": 2, ...}``) or an object
with the flat config under ``"config"`` (other keys, e.g. the pipeline name, throughput and
study, are ignored here). Keys are those of ``placer.contracts.pipeline``.

    import placer

    loader = placer.build_dataloader(MyDataset(), "tuned.json", batch_size=64)
    # torchdata.nodes / tf.data, with per-stage knobs and cache:
    nodes = placer.build_nodes(paths, [("read", read), ("decode", decode)], "tuned.json",
                               batch_size=64, collate_fn=collate)
    ds = placer.build_tf_dataset(paths, [("read", read), ("decode", decode)], "tuned.json",
                                 batch_size=64)
    # your own loader, as `placer tune my_job:make_loader -o tuned.json` tuned it:
    loader = placer.tuned_loader(my_job.make_loader(), "tuned.json")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from placer.collectors.pipeline.adapters import spec_engine
from placer.collectors.pipeline.adapters.dataloader import (
    DATASET_STAGE,
    DataLoaderPipeline,
    ProbedDataset,
    make_dataloader,
    torch_dataset,
)
from placer.collectors.pipeline.adapters.tfdata import TfPipeline, TfSpec, TfStage, tf_pipeline_def
from placer.collectors.pipeline.adapters.torchdata_nodes import TorchdataPipeline
from placer.collectors.pipeline.adapters.user import TfGraphPipeline, user_pipeline_def
from placer.collectors.pipeline.engine import usable_cores
from placer.collectors.pipeline.probe import Probes
from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from placer.contracts.pipeline import Config
from placer.errors import InvalidInputError

DATALOADER_KEYS = ("num_workers", "prefetch_factor", "persistent_workers", "pin_memory", "cache")

log = logging.getLogger(__name__)


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
    return torch_dataset(items, _stage_specs(stages), probes, cache_after)


def _cached_view(dataset: Any, transform: Callable[[Any], Any] | None, cache: bool) -> Any:
    """A dataset placer did not build, as a staged one: its ``__getitem__`` is one stage
    (cached per index when ``cache``), then ``transform`` (not cached: random work)."""
    if not (hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")):
        raise InvalidInputError(
            "config caches a stage, which needs a map-style dataset (__len__ and "
            "__getitem__); remove 'cache' from the config for an iterable dataset"
        )
    stages: list[tuple[str, Callable[[Any], Any]]] = [(DATASET_STAGE, dataset.__getitem__)]
    if transform is not None:
        stages.append(("transform", transform))
    return staged_dataset(range(len(dataset)), stages, cache_after=DATASET_STAGE if cache else None)


def _fit_workers(cfg: Config, max_workers: int | None) -> None:
    """Cap ``num_workers`` at ``max_workers`` (default: the CPUs this process may use,
    the most PyTorch runs without its too-many-workers warning)."""
    if max_workers is not None and (isinstance(max_workers, bool) or max_workers < 0):
        raise InvalidInputError(f"max_workers must be an integer >= 0, got {max_workers!r}")
    limit = usable_cores() if max_workers is None else max_workers
    wanted = int(cfg.get("num_workers") or 0)
    if wanted > limit:
        log.info("num_workers %d capped at %d (pass max_workers to allow more)", wanted, limit)
        cfg["num_workers"] = limit


def build_dataloader(
    dataset: Any,
    config: str | os.PathLike[str] | dict[str, Any],
    *,
    batch_size: int = 1,
    transform: Callable[[Any], Any] | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    max_workers: int | None = None,
    probes: Probes | None = None,
    **kwargs: Any,
) -> Any:
    """A ``torch.utils.data.DataLoader`` over ``dataset`` with the tuned DataLoader knobs.

    Any map-style dataset works. The config's ``cache`` names a stage of the tuned
    pipeline: a dataset from :func:`staged_dataset` caches after that stage; any other
    dataset caches each item its ``__getitem__`` returns (so it must not be random), and
    ``transform`` runs after the cache, every epoch (random augmentation goes there).
    ``num_workers`` is capped at the CPUs this process may use unless ``max_workers``
    allows more. Other keyword arguments go to ``DataLoader`` (``shuffle``, ``drop_last``,
    ...). Keys of other engines (per-stage parallelism) are rejected.
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
    _fit_workers(cfg, max_workers)
    cache = cfg.get("cache")
    if isinstance(dataset, ProbedDataset):
        if transform is not None:
            raise InvalidInputError("transform is for a dataset placer did not build; add a stage")
        if cache is not None:
            names = [s.name for s in dataset.stages]
            if cache not in names:
                raise InvalidInputError(f"config caches after {cache!r}, not a stage of {names}")
            dataset.cache_after = cache
            dataset._cache_pos = names.index(cache)
    elif cache is not None or transform is not None:
        dataset = _cached_view(dataset, transform, cache is not None)
    if collate_fn is None:
        from torch.utils.data import default_collate  # lazy: heavy

        collate_fn = default_collate
    return make_dataloader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate_fn,
        config=cfg,
        probes=probes,
        tensors=False,
        **kwargs,
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


def build_tf_dataset(
    items: Sequence[Any],
    stages: Sequence[tuple[str, Callable[..., Any]] | TfStage],
    config: str | os.PathLike[str] | dict[str, Any],
    *,
    batch_size: int,
) -> Any:
    """A ``tf.data.Dataset``: ``items`` through graph-function stages, batched, with the
    tuned ``num_parallel_calls`` per stage, ``cache`` and ``prefetch``."""
    tf_stages = [s if isinstance(s, TfStage) else TfStage(s[0], s[1]) for s in stages]
    listed = list(items)
    spec = TfSpec(name="job", items=lambda: listed, stages=tf_stages, batch_size=batch_size)
    pipeline = tf_pipeline_def(spec).build(load_config(config), None)
    assert isinstance(pipeline, TfPipeline)  # what the tfdata engine builds
    return pipeline.dataset


def tuned_loader(loader: Any, config: str | os.PathLike[str] | dict[str, Any]) -> Any:
    """``loader`` (what a ``module:function`` given to ``placer tune`` returns: a
    DataLoader, ``(dataset, kwargs)``, a torchdata.nodes graph, a tf.data.Dataset) rebuilt
    with the config ``placer tune -o`` wrote for it, the way the trials rebuilt it.

    Returns a DataLoader, or a re-iterable that replays the first epoch's batches (config
    ``cache: "collate"``), a ``torchdata.nodes.Loader`` (the graph is rebuilt in place) or
    a ``tf.data.Dataset``.
    """
    built = user_pipeline_def("loader", loader).build(load_config(config), None)
    if isinstance(built, DataLoaderPipeline):
        return built.loader
    if isinstance(built, TfGraphPipeline):
        return built.dataset
    return built
