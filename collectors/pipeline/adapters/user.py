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
import time
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
from placer.errors import InvalidInputError, said

COLLATE_STAGE = "collate"
#: What ``module:function`` may return (the one-line error names them).
ACCEPTED = (
    "a PipelineDef, a torch DataLoader, (dataset, DataLoader kwargs), a tf.data.Dataset "
    "or a torchdata.nodes node"
)


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
    if _is_node(obj) or _isinstance(obj, "torchdata.nodes", "Loader"):
        return nodes_def(name, obj)
    if _tf_dataset(obj):
        return tf_def(name, obj)
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
            f"pipeline {name}: DataLoader(dataset, **kwargs) refused them: {said(exc)}"
        ) from None


def _settings(loader: Any) -> tuple[Config, dict[str, Any]]:
    """The loader's own values of the knobs (the naive config), and the DataLoader
    arguments no knob touches that a rebuilt loader keeps (those not at their default)."""
    naive: Config = {
        "num_workers": int(loader.num_workers),
        "prefetch_factor": int(loader.prefetch_factor or 2),
        "persistent_workers": bool(loader.persistent_workers),
        "pin_memory": bool(loader.pin_memory),
    }
    kept: dict[str, Any] = {}
    for key in ("generator", "timeout", "multiprocessing_context", "pin_memory_device"):
        value = getattr(loader, key, None)
        if value not in (None, "", 0):
            kept[key] = value
    if getattr(loader, "in_order", True) is False:
        kept["in_order"] = False
    return naive, kept


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
            f"pipeline {name}: its map-style dataset has no length ({said(exc)})"
        ) from None
    if n == 0 or batches == 0:
        raise InvalidInputError(
            f"pipeline {name} yields nothing: its DataLoader has {n} samples in {batches} batches"
        )
    try:
        fixed = same_output(dataset[0], dataset[0])
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__: one line
        raise InvalidInputError(f"pipeline {name}: dataset[0] raised {said(exc)}") from None
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
    naive, kept = _settings(loader)
    extra.update(kept)
    naive["cache"] = None
    workers = int(naive["num_workers"])
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

    def build(config: Config, probes: Any) -> Iterable[Any]:
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
    naive, extra = _settings(loader)
    extra["drop_last"] = loader.drop_last
    workers = int(naive["num_workers"])
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
    batch_size = loader.batch_size
    dataset = loader.dataset
    collate = loader.collate_fn
    worker_init = loader.worker_init_fn

    def build(config: Config, probes: Any) -> Iterable[Any]:
        cfg = _check_config(name, knobs, naive, config)
        source = probed_iterable(dataset, probes)
        rebuilt: Iterable[Any] = make_dataloader(
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
        return rebuilt

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

    class ProbedIterable(IterableDataset):  # type: ignore[misc,type-arg,unused-ignore]
        def __iter__(self) -> Iterator[Any]:
            assert probes is not None
            return probes.iterate(DATASET_STAGE, iter(dataset))

    return ProbedIterable()


# --------------------------------------------------------------------------- names


def _stage_name(fn: Any, taken: set[str], default: str) -> str:
    """A stage name from a map function's name (``decode``), unique, else ``default``."""
    inner = getattr(fn, "map_fn", None) or getattr(fn, "func", None) or fn
    raw = str(getattr(inner, "__name__", "") or "")
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in raw).strip("_") or default
    if name in taken or name in (BATCH_STAGE, DATASET_STAGE, COLLATE_STAGE, "prefetch"):
        name = default
    while name in taken:
        name += "_"
    taken.add(name)
    return name


# --------------------------------------------------------------------------- torchdata.nodes


def _is_node(obj: Any) -> bool:
    return _isinstance(obj, "torchdata.nodes", "BaseNode")


def _node_chain(root: Any) -> list[tuple[Any, Any]]:
    """``(parent, node)`` from the output down each ``source`` link (parent None at root);
    a node with several sources (a weighted sampler) ends the chain."""
    chain: list[tuple[Any, Any]] = []
    parent, node = None, root
    while _is_node(node) and len(chain) < 10_000:
        chain.append((parent, node))
        parent, node = node, getattr(node, "source", None)
    return chain


def _length_of_source(node: Any) -> int:
    for attr in ("sampler", "iterable"):
        n = _length(getattr(node, attr, None))
        if n:
            return n
    return 0


def nodes_def(name: str, obj: Any) -> PipelineDef:
    """A ``PipelineDef`` over a user's torchdata.nodes graph: each ``ParallelMapper`` (and
    ``Mapper``, its inline form) a probed stage with its own ``parallelism.<stage>``
    (``num_workers``; 0 runs it inline), ``prefetch`` the output ``Prefetcher``'s depth."""
    root = getattr(obj, "root", obj)  # a Loader wraps the graph's root
    chain = _node_chain(root)
    mapper = _loaded_type("torchdata.nodes", "ParallelMapper")
    prefetcher = _loaded_type("torchdata.nodes", "Prefetcher")
    batcher = _loaded_type("torchdata.nodes", "Batcher")
    taken: set[str] = set()
    maps: list[tuple[int, str]] = []  # (position in chain, stage name), output first
    for pos, (_parent, node) in enumerate(chain):
        if mapper is not None and isinstance(node, mapper):
            fn = getattr(node, "map_fn", None)
            maps.append((pos, _stage_name(fn, taken, f"map{len(maps)}")))
    if not maps:
        raise InvalidInputError(
            f"pipeline {name}: its torchdata.nodes graph has no ParallelMapper or Mapper "
            "stage to tune or time"
        )
    maps.reverse()  # source first
    top = max(default_max_parallelism(), *(int(chain[p][1].num_workers) for p, _ in maps))
    knobs: dict[str, Knob] = {f"parallelism.{s}": IntKnob(0, top) for _, s in maps}
    naive: Config = {f"parallelism.{s}": int(chain[p][1].num_workers) for p, s in maps}
    root_prefetch = prefetcher is not None and isinstance(root, prefetcher)
    knobs["prefetch"] = IntKnob(1 if root_prefetch else 0, 16)
    naive["prefetch"] = int(root.prefetch_factor) if root_prefetch else 0
    batch_size = next(
        (
            int(getattr(n, "batch_size", 1))
            for _, n in chain
            if batcher is not None and isinstance(n, batcher)
        ),
        1,
    )
    samples = _length_of_source(chain[-1][1])
    notes = [
        "no cache offered: placer cannot tell whether the graph's samplers or maps are random",
        "stages are the graph's mappers; the source node's own time is not probed",
    ]
    if not samples:
        notes.append("the source has no length: an epoch is taken as 1,000 batches")
    stages = [
        StageInfo(s, kind="map" if i else "source", parallelism_knob=f"parallelism.{s}")
        for i, (_, s) in enumerate(maps)
    ]

    def build(config: Config, probes: Any) -> Iterable[Any]:
        import torchdata.nodes as tn  # lazy: heavy (the user's module imported it already)

        cfg = _check_config(name, knobs, naive, config)
        # Runs in the measuring child: rebuilding the user's graph in place leaks nowhere.
        for pos, stage in maps:
            parent, node = chain[pos]
            workers = int(cfg[f"parallelism.{stage}"])
            fn = probes.wrap(stage, node.map_fn) if probes is not None else node.map_fn
            cap = node.max_concurrent
            new = tn.ParallelMapper(
                node.source,
                fn,
                num_workers=workers,
                in_order=node.in_order,
                method=node.method,
                multiprocessing_context=node.multiprocessing_context,
                max_concurrent=min(cap, workers) if cap is not None and workers > 0 else None,
                snapshot_frequency=node.snapshot_frequency,
            )
            if parent is None:
                chain[pos] = (None, new)
            else:
                parent.source = new
        out = chain[0][1]
        depth = int(cfg["prefetch"])
        if root_prefetch:
            out.prefetch_factor = max(depth, 1)
        elif depth > 0:
            out = tn.Prefetcher(out, prefetch_factor=depth)
        loader: Iterable[Any] = tn.Loader(out)
        return loader

    return PipelineDef(
        name=name,
        engine="torchdata",
        stages=stages,
        knobs=knobs,
        build=build,
        batch_size=batch_size,
        naive_config=naive,
        dataset_samples=samples or 1000 * batch_size,
        description=f"the torchdata.nodes graph that {name} returns",
        notes=notes,
    )


# --------------------------------------------------------------------------- tf.data


def _tf_dataset(obj: Any) -> bool:
    tf = sys.modules.get("tensorflow")
    data = getattr(tf, "data", None)
    typ = getattr(data, "Dataset", None)
    return isinstance(typ, type) and isinstance(obj, typ)


#: ops whose output changes from one run to the next (stateless random ops do not)
_RANDOM_OPS = ("Shuffle", "Random")


def _graph_of(ds: Any) -> Any:
    """The dataset's GraphDef (tf.data serializes every dataset it can rebuild)."""
    import tensorflow as tf  # lazy: heavy (the user's module imported it already)
    from tensorflow.core.framework import graph_pb2  # lazy: heavy

    graph = graph_pb2.GraphDef()
    graph.ParseFromString(tf.raw_ops.DatasetToGraphV2(input_dataset=ds._variant_tensor).numpy())
    return graph


def _random_ops(graph: Any) -> list[str]:
    ops = [n.op for n in graph.node]
    ops += [n.op for f in graph.library.function for n in f.node_def]
    return sorted(
        {op for op in ops if any(r in op for r in _RANDOM_OPS) and not op.startswith("Stateless")}
    )


def _const_of(graph: Any, node: Any) -> Any:
    """The Const node that feeds ``node``'s last input (``num_parallel_calls``)."""
    wanted = [i for i in node.input if not i.startswith("^")][-1].split(":")[0]
    return next(n for n in graph.node if n.name == wanted)


def tf_def(name: str, ds: Any) -> PipelineDef:
    """A ``PipelineDef`` over a user's ``tf.data.Dataset``: its parallel maps'
    ``num_parallel_calls`` (rewritten in the dataset's serialized graph), ``prefetch``
    and ``cache`` at the output (when no op in it is random)."""
    try:
        graph = _graph_of(ds)
    except Exception as exc:  # noqa: BLE001 - a dataset tf.data cannot serialize
        raise InvalidInputError(
            f"pipeline {name}: tf.data cannot serialize its dataset's graph ({said(exc)}); "
            "placer rewrites that graph to tune it"
        ) from None
    cardinality = int(ds.cardinality())
    if cardinality == 0:
        raise InvalidInputError(f"pipeline {name} yields nothing: its tf.data.Dataset is empty")
    taken: set[str] = set()
    maps: list[tuple[str, str]] = []  # (node name in the graph, stage name), source first
    sequential = 0
    for node in graph.node:
        if node.op.startswith("ParallelMapDataset"):
            maps.append((node.name, _stage_name(None, taken, f"map{len(maps)}")))
        elif node.op == "MapDataset":
            sequential += 1
    top = 2 * max(default_max_parallelism() // 2, 1)
    choices = (-1, *sorted({1, 2, 4, top // 2, top} - {0}))
    knobs: dict[str, Knob] = {}
    naive: Config = {}
    for node_name, stage in maps:
        node = next(n for n in graph.node if n.name == node_name)
        value = int(_const_of(graph, node).attr["value"].tensor.int64_val[0])
        knobs[f"parallelism.{stage}"] = ChoiceKnob(tuple(sorted({*choices, value})))
        naive[f"parallelism.{stage}"] = value
    knobs["prefetch"] = IntKnob(0, 16)
    naive["prefetch"] = 0
    naive["cache"] = None
    random = _random_ops(graph)
    notes = [
        "tf.data runs the dataset's graph natively: the analysis sees it as one stage "
        "(its process CPU per batch), not per map, so its first config is coarse and "
        "Optuna searches the maps' num_parallel_calls (-1: AUTOTUNE)"
    ]
    if random:
        notes.append(f"no cache offered: the graph has random ops ({', '.join(random[:4])})")
    else:
        knobs["cache"] = ChoiceKnob((None, DATASET_STAGE))
    if sequential:
        notes.append(
            f"{sequential} map(s) without num_parallel_calls stay sequential (parallelizing "
            "a map placer did not write could change its results)"
        )
    spec = ds.element_spec
    first = maps[0][1] if maps else None

    def build(config: Config, probes: Any) -> Iterable[Any]:
        import tensorflow as tf  # lazy: heavy

        cfg = _check_config(name, knobs, naive, config)
        rewritten = _graph_of(ds)
        for node_name, stage in maps:
            node = next(n for n in rewritten.node if n.name == node_name)
            calls = int(cfg[f"parallelism.{stage}"])
            _const_of(rewritten, node).attr["value"].tensor.int64_val[:] = [calls]
        variant = tf.raw_ops.DatasetFromGraph(graph_def=rewritten.SerializeToString())
        out = tf.data.experimental.from_variant(variant, spec)
        if cfg.get("cache") is not None:
            out = out.cache()
        if int(cfg["prefetch"]) > 0:
            out = out.prefetch(int(cfg["prefetch"]))
        return TfGraphPipeline(out, probes)

    batch_size = 1
    for node in graph.node:
        if node.op.startswith("BatchDataset"):
            const = next(n for n in graph.node if n.name == node.input[1].split(":")[0])
            batch_size = int(const.attr["value"].tensor.int64_val[0])
            break
    return PipelineDef(
        name=name,
        engine="tfdata",
        stages=[
            StageInfo(
                DATASET_STAGE,
                kind="source",
                random=bool(random),
                parallelism_knob=f"parallelism.{first}" if first else None,
            )
        ],
        knobs=knobs,
        build=build,
        batch_size=batch_size,
        naive_config=naive,
        dataset_samples=cardinality * batch_size if cardinality > 0 else 1000 * batch_size,
        description=f"the tf.data.Dataset that {name} returns",
        notes=notes,
    )


class TfGraphPipeline:
    """Re-iterable over a rebuilt dataset; each ``next()`` is the ``dataset`` stage's work,
    timed in wall time and in process CPU (tf.data's threads are not this thread)."""

    def __init__(self, dataset: Any, probes: Probes | None) -> None:
        self.dataset = dataset
        self.probe = probes.stage(DATASET_STAGE) if probes is not None else None

    def __iter__(self) -> Iterator[Any]:
        probe = self.probe
        if probe is None:
            yield from self.dataset
            return
        it = iter(self.dataset)
        while True:
            w0, c0 = time.perf_counter_ns(), time.process_time_ns()
            try:
                batch = next(it)
            except StopIteration:
                return
            w1, c1 = time.perf_counter_ns(), time.process_time_ns()
            probe.record(
                n_in=1, n_out=1, wall_ns=w1 - w0, cpu_ns=c1 - c0, bytes_out=_tf_bytes(batch)
            )
            yield batch


def _tf_bytes(batch: Any) -> int:
    """Bytes of a tf.data element (every tensor in its structure)."""
    import tensorflow as tf  # lazy: heavy

    return sum(
        int(t.shape.num_elements() or 0) * int(t.dtype.size)
        for t in tf.nest.flatten(batch)
        if hasattr(t, "shape") and hasattr(t, "dtype")
    )
