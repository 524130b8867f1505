"""A user's own loader, tuned as it is: no rewrite into placer's stage spec.

``placer tune module:function`` accepts a function that returns, besides a ``PipelineDef``:

- a ``torch.utils.data.DataLoader``, or ``(dataset, kwargs)`` (the DataLoader it would
  build): each trial rebuilds it from ``loader.dataset``, its batch size, sampler,
  ``drop_last``, collate and worker functions, with that trial's ``num_workers``,
  ``prefetch_factor``, ``persistent_workers``, ``pin_memory`` (only where an accelerator
  can pin) and ``cache``: ``"dataset"`` keeps each sample ``__getitem__`` returned (per
  worker process, so it survives epochs in persistent workers), ``"collate"`` keeps the
  first epoch's batches in the consumer's process. A cache is offered only when it cannot
  change what the loader delivers: ``dataset[0]`` fetched twice must be equal (no random
  augmentation), and batches are kept only when the sampler is sequential. Probes time
  ``__getitem__`` (stage ``dataset``), batching and ``collate_fn``, so the analysis models
  the loader like an example pipeline;
- a ``torchdata.nodes`` node (or ``Loader``): every ``ParallelMapper`` in the graph is a
  stage with its own ``parallelism.<stage>`` knob, every ``Prefetcher`` a
  ``prefetch.<n>`` knob; each map function is probed;
- a ``tf.data.Dataset``: its graph runs natively and is measured as one stage; the knobs
  are what applies to a graph placer did not build (``prefetch`` depth and ``cache`` at the
  output, tf.data's map parallelization and its thread-pool size). The analysis cannot
  split the work across the user's map stages; the output says so and Optuna searches.

The defining function runs once in the tuning process; each trial runs in a forked child
(:func:`placer.collectors.pipeline.measure.measure`), so a rebuilt loader never leaks into the
next trial. Heavy libraries are never imported here: a loader's own module already did.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from placer.collectors.pipeline.adapters.dataloader import (
    DATASET_STAGE,
    DataLoaderPipeline,
    make_dataloader,
)
from placer.collectors.pipeline.adapters.python_iter import EpochCache
from placer.collectors.pipeline.engine import default_max_parallelism
from placer.collectors.pipeline.probe import Probes
from placer.collectors.pipeline.spec import BATCH_STAGE, PipelineSpec, StageSpec
from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, Knob, PipelineDef, StageInfo
from placer.errors import InvalidInputError, first_line

COLLATE_STAGE = "collate"
#: What ``module:function`` may return (the one-line error names them).
ACCEPTED = (
    "a PipelineDef, a torch DataLoader, (dataset, DataLoader kwargs), a tf.data.Dataset "
    "or a torchdata.nodes node"
)


def _said(exc: BaseException) -> str:
    line = first_line(exc)
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _loaded_type(module: str, name: str) -> type | None:
    """``module.name`` if the user's code already imported ``module`` (never imports it)."""
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


def _isinstance(obj: Any, module: str, name: str) -> bool:
    typ = _loaded_type(module, name)
    return typ is not None and isinstance(obj, typ)


def same_output(a: Any, b: Any, _depth: int = 0) -> bool:
    """Whether two outputs of one ``__getitem__`` are equal (arrays and tensors by value).

    Anything it cannot compare counts as different: a cache is offered only when sure.
    """
    if _depth > 8 or type(a) is not type(b):
        return False
    if isinstance(a, Mapping):
        return a.keys() == b.keys() and all(same_output(a[k], b[k], _depth + 1) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(
            same_output(x, y, _depth + 1) for x, y in zip(a, b, strict=True)
        )
    if hasattr(a, "__array__") or hasattr(a, "__array_interface__") or hasattr(a, "numpy"):
        import numpy as np  # lazy: heavy

        try:
            left, right = _as_array(a), _as_array(b)
            return bool(left.shape == right.shape and np.array_equal(left, right, equal_nan=True))
        except Exception:  # noqa: BLE001 - not comparable: not the same as far as we know
            return False
    try:
        return bool(a == b) or pickle.dumps(a) == pickle.dumps(b)
    except Exception:  # noqa: BLE001
        return False


def _as_array(x: Any) -> Any:
    import numpy as np  # lazy: heavy

    numpy = getattr(x, "numpy", None)
    if callable(numpy) and not hasattr(x, "__array_interface__"):
        x = x.detach().cpu().numpy() if hasattr(x, "detach") else numpy()
    return np.asarray(x)


def _check_config(name: str, knobs: Mapping[str, Knob], naive: Config, config: Config) -> Config:
    """``config`` over ``naive``; keys that are neither knobs nor fixed values raise."""
    unknown = sorted(set(config) - set(knobs) - set(naive))
    if unknown:
        raise InvalidInputError(
            f"{name}: unknown config key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(set(knobs) | set(naive)))}"
        )
    return {**naive, **config}


class BatchCache:
    """Re-iterable: the first complete epoch's batches, replayed by every later epoch."""

    def __init__(self, inner: Iterable[Any]) -> None:
        self.inner = inner
        self.cache = EpochCache(COLLATE_STAGE)

    def __iter__(self) -> Iterator[Any]:
        if self.cache.elements is not None:
            return iter(self.cache.elements)
        return self.cache.tap(iter(self.inner))


def user_pipeline_def(name: str, obj: Any) -> PipelineDef:
    """The ``PipelineDef`` of what a user's ``module:function`` returned (one-line errors)."""
    if isinstance(obj, PipelineDef):
        return obj
    if _isinstance(obj, "torch.utils.data", "DataLoader"):
        return dataloader_def(name, obj)
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], Mapping):
        return dataloader_def(name, obj)
    raise InvalidInputError(
        f"pipeline builder {name} returned {type(obj).__name__}, not {ACCEPTED}"
    )


# --------------------------------------------------------------------------- DataLoader


def _accelerator() -> bool:
    """Whether pinned host memory can speed a copy (a CUDA device torch can see)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    return bool(cuda is not None and cuda.is_available())


def _sequential(sampler: Any) -> bool:
    seq = _loaded_type("torch.utils.data", "SequentialSampler")
    return seq is not None and isinstance(sampler, seq)


def _loader_of(name: str, obj: Any) -> Any:
    """The DataLoader ``obj`` is or that ``(dataset, kwargs)`` builds (one-line errors)."""
    if not isinstance(obj, tuple):
        return obj
    dataset, kwargs = obj
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise InvalidInputError(
            f"pipeline {name} returned (dataset, {type(kwargs).__name__}); the second item "
            "must be a dict of DataLoader keyword arguments"
        )
    from torch.utils.data import DataLoader  # lazy: heavy

    try:
        return DataLoader(dataset, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's kwargs: say which in one line
        raise InvalidInputError(
            f"pipeline {name}: DataLoader(dataset, **kwargs) refused them: {_said(exc)}"
        ) from None


def dataloader_def(name: str, obj: Any) -> PipelineDef:
    """A ``PipelineDef`` that rebuilds a user's DataLoader under each trial's knobs."""
    loader = _loader_of(name, obj)
    dataset = loader.dataset
    if _isinstance(dataset, "torch.utils.data", "IterableDataset") or not hasattr(
        dataset, "__getitem__"
    ):
        return _iterable_loader_def(name, loader)
    try:
        n = len(dataset)
        batches = len(loader)
    except TypeError as exc:
        raise InvalidInputError(
            f"pipeline {name}: its map-style dataset has no length ({_said(exc)})"
        ) from None
    if n == 0 or batches == 0:
        raise InvalidInputError(
            f"pipeline {name} yields nothing: its DataLoader has {n} samples in {batches} batches"
        )
    try:
        fixed = same_output(dataset[0], dataset[0])
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__: one line
        raise InvalidInputError(f"pipeline {name}: dataset[0] raised {_said(exc)}") from None
    notes: list[str] = []
    extra: dict[str, Any] = {}
    if loader.batch_size is not None:  # automatic batching: sampler + batch size
        batch_size = int(loader.batch_size)
        extra.update(sampler=loader.sampler, drop_last=loader.drop_last)
        ordered = _sequential(loader.sampler)
    elif loader.batch_sampler is not None:  # the user's own batch sampler
        batch_size = int(getattr(loader.batch_sampler, "batch_size", 0) or 1)
        extra.update(batch_sampler=loader.batch_sampler, batch_size=1)
        ordered = _sequential(getattr(loader.batch_sampler, "sampler", None))
    else:  # batch_size=None: one sample per "batch", no batching
        batch_size = 1
        extra.update(sampler=loader.sampler, batch_size=None)
        ordered = _sequential(loader.sampler)
    for key in ("generator", "timeout", "multiprocessing_context", "pin_memory_device"):
        value = getattr(loader, key, None)
        if value not in (None, "", 0):
            extra[key] = value
    if getattr(loader, "in_order", True) is False:
        extra["in_order"] = False
    workers = int(loader.num_workers)
    naive: Config = {
        "num_workers": workers,
        "prefetch_factor": int(loader.prefetch_factor or 2),
        "persistent_workers": bool(loader.persistent_workers),
        "pin_memory": bool(loader.pin_memory),
        "cache": None,
    }
    caches: list[str] = []
    if fixed:
        caches.append(DATASET_STAGE)
        if ordered:
            caches.append(COLLATE_STAGE)
        else:
            notes.append(
                "batch cache not offered: the sampler is not sequential (each epoch batches "
                "other samples)"
            )
    else:
        notes.append(
            "no cache offered: dataset[0] fetched twice differed (random augmentation?), "
            "so a cached sample would change what the loader delivers"
        )
    knobs: dict[str, Knob] = {
        "num_workers": IntKnob(0, max(default_max_parallelism(), workers)),
        "prefetch_factor": IntKnob(1, max(8, naive["prefetch_factor"])),
        "persistent_workers": ChoiceKnob((False, True)),
    }
    if _accelerator():
        knobs["pin_memory"] = ChoiceKnob((False, True))
    else:
        notes.append(
            f"pin_memory stays {naive['pin_memory']}: no accelerator here to pin memory for"
        )
    if caches:
        knobs["cache"] = ChoiceKnob((None, *caches))
    spec = PipelineSpec(
        name=name,
        items=lambda: range(n),
        stages=[
            StageSpec(DATASET_STAGE, dataset.__getitem__, kind="source"),
            StageSpec(COLLATE_STAGE, loader.collate_fn, kind="collate"),
        ],
        batch_size=max(batch_size, 1),
    )
    worker_init = loader.worker_init_fn

    def build(config: Config, probes: Probes | None) -> Iterable[Any]:
        cfg = _check_config(name, knobs, naive, config)
        cache = cfg.get("cache")
        pipe = DataLoaderPipeline(
            spec,
            {**cfg, "cache": DATASET_STAGE if cache == DATASET_STAGE else None},
            probes,
            tensors=False,
            worker_init_fn=worker_init,
            **extra,
        )
        return BatchCache(pipe) if cache == COLLATE_STAGE else pipe

    return PipelineDef(
        name=name,
        engine="dataloader",
        stages=[
            StageInfo(DATASET_STAGE, kind="source", random=not fixed),
            StageInfo(BATCH_STAGE, kind="batch", sequential=True),
            StageInfo(COLLATE_STAGE, kind="collate", random=not (fixed and ordered)),
        ],
        knobs=knobs,
        build=build,
        batch_size=max(batch_size, 1),
        naive_config=naive,
        dataset_samples=n if loader.batch_size is None else min(n, batches * batch_size),
        description=f"{type(dataset).__name__} in the DataLoader that {name} returns",
        notes=notes,
    )


def _iterable_loader_def(name: str, loader: Any) -> PipelineDef:
    """A DataLoader over an iterable dataset: its workers' knobs, never their count.

    Each worker iterates the whole dataset unless the dataset splits itself with
    ``get_worker_info()``, which placer cannot see: changing ``num_workers`` could change
    the data, so it stays the user's. No cache (the stream's order is the dataset's).
    """
    workers = int(loader.num_workers)
    naive: Config = {
        "num_workers": workers,
        "prefetch_factor": int(loader.prefetch_factor or 2),
        "persistent_workers": bool(loader.persistent_workers),
        "pin_memory": bool(loader.pin_memory),
    }
    knobs: dict[str, Knob] = {}
    if workers > 0:
        knobs["prefetch_factor"] = IntKnob(1, max(8, naive["prefetch_factor"]))
        knobs["persistent_workers"] = ChoiceKnob((False, True))
    if _accelerator():
        knobs["pin_memory"] = ChoiceKnob((False, True))
    if not knobs:
        raise InvalidInputError(
            f"pipeline {name}: nothing to tune: its DataLoader iterates an iterable dataset "
            "in the main process (num_workers=0), and placer keeps num_workers (each worker "
            "would repeat the stream unless the dataset splits it); return a map-style "
            "dataset or set num_workers"
        )
    notes = [
        f"num_workers stays {workers}: an iterable dataset repeats its stream in every "
        "worker unless it splits it itself (get_worker_info), which placer cannot see",
        "the analysis sees the whole iteration as one stage (dataset)",
    ]
    extra: dict[str, Any] = {"drop_last": loader.drop_last}
    for key in ("generator", "timeout", "multiprocessing_context", "pin_memory_device"):
        value = getattr(loader, key, None)
        if value not in (None, "", 0):
            extra[key] = value
    batch_size = loader.batch_size
    dataset = loader.dataset
    collate = loader.collate_fn
    worker_init = loader.worker_init_fn

    def build(config: Config, probes: Probes | None) -> Iterable[Any]:
        cfg = _check_config(name, knobs, naive, config)
        source = probed_iterable(dataset, probes)
        return make_dataloader(
            source,
            batch_size=batch_size,
            collate_fn=collate,
            config=cfg,
            probes=probes,
            collate_name=COLLATE_STAGE,
            worker_init_fn=worker_init,
            tensors=False,
            **extra,
        )

    return PipelineDef(
        name=name,
        engine="dataloader",
        stages=[
            StageInfo(DATASET_STAGE, kind="source", sequential=True, random=True),
            StageInfo(BATCH_STAGE, kind="batch", sequential=True),
            StageInfo(COLLATE_STAGE, kind="collate", random=True),
        ],
        knobs=knobs,
        build=build,
        batch_size=int(batch_size or 1),
        naive_config=naive,
        dataset_samples=_length(dataset) or 10_000 * int(batch_size or 1),
        description=f"iterable {type(dataset).__name__} in the DataLoader that {name} returns",
        notes=notes,
    )


def _length(obj: Any) -> int:
    try:
        return int(len(obj))
    except Exception:  # noqa: BLE001 - a stream without a length
        return 0


def probed_iterable(dataset: Any, probes: Probes | None) -> Any:
    """An ``IterableDataset`` that iterates ``dataset`` through the ``dataset`` probe."""
    if probes is None:
        return dataset
    from torch.utils.data import IterableDataset  # lazy: heavy

    class ProbedIterable(IterableDataset):  # type: ignore[misc,unused-ignore]
        def __iter__(self) -> Iterator[Any]:
            assert probes is not None
            return probes.iterate(DATASET_STAGE, iter(dataset))

    return ProbedIterable()
