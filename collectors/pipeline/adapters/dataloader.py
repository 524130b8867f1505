"""PyTorch DataLoader engine: one pool of worker processes for every stage.

The dataset's ``__getitem__`` runs the source fetch and each transform through their
probes; ``collate_fn`` runs the batch and collate probes and copies the worker's counters
to shared memory, where the parent sums them (see :class:`placer.collectors.pipeline.probe.Probes`).
Knobs: ``num_workers``, ``prefetch_factor``, ``persistent_workers``, ``pin_memory`` and
``cache`` (a per-process, per-index cache after a stage: it survives epochs in the main
process and in persistent workers, as a real job's in-dataset cache would).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from placer.collectors.pipeline.engine import SpecEngine, default_max_parallelism
from placer.collectors.pipeline.probe import Probes
from placer.collectors.pipeline.spec import BATCH_STAGE, PipelineSpec, StageSpec
from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, Knob

_clock = time.perf_counter_ns

DATASET_STAGE = "dataset"  # the stage name of a user's own dataset's __getitem__


def _dataset_base() -> type:
    from torch.utils.data import Dataset  # lazy: heavy

    return Dataset


class ProbedDataset:
    """Map-style dataset: item ``i`` through the source and map stages, each probed."""

    def __init__(
        self,
        items: Sequence[Any],
        stages: Sequence[StageSpec],
        probes: Probes | None,
        cache_after: str | None = None,
    ) -> None:
        self.items = items
        self.stages = list(stages)
        self.probes = probes
        self.cache_after = cache_after
        names = [s.name for s in self.stages]
        self._cache_pos = names.index(cache_after) if cache_after in names else -1
        self._cache: dict[int, Any] = {}
        self._fns: list[Callable[[Any], Any]] = [
            probes.wrap(s.name, s.fn) if probes is not None else s.fn for s in self.stages
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Any:
        start = 0
        if self._cache_pos >= 0 and index in self._cache:
            x = self._cache[index]
            start = self._cache_pos + 1
        else:
            x = self.items[index]
        for pos in range(start, len(self._fns)):
            x = self._fns[pos](x)
            if pos == self._cache_pos:
                self._cache[index] = x
        return x


def torch_dataset(
    items: Sequence[Any],
    stages: Sequence[StageSpec],
    probes: Probes | None,
    cache_after: str | None = None,
) -> Any:
    """A :class:`ProbedDataset` that is also a ``torch.utils.data.Dataset``.

    Its class is made here (torch is imported lazily), so pickling it by name would fail;
    it pickles as a call to this function instead, which spawn and forkserver workers need.
    """
    cls = type("StagedDataset", (ProbedDataset, _dataset_base()), {"__reduce__": _rebuild})
    return cls(items, stages, probes, cache_after)


def _rebuild(self: ProbedDataset) -> tuple[Any, ...]:
    return (torch_dataset, (self.items, self.stages, self.probes, self.cache_after))


def to_torch(value: Any) -> Any:
    """numpy arrays (also inside dicts/tuples/lists) as torch tensors, without copying.

    Tensors travel from DataLoader workers through shared memory; numpy arrays would be
    pickled through a pipe, which is not what a real job pays.
    """
    import numpy as np  # lazy: heavy
    import torch  # lazy: heavy

    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {k: to_torch(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return type(value)(to_torch(v) for v in value)
    return value


class ProbedCollate:
    """Batch + collate probes; flushes worker counters once per batch."""

    def __init__(
        self,
        collate: Callable[[list[Any]], Any],
        name: str,
        probes: Probes | None,
        tensors: bool = True,
    ) -> None:
        self.collate = collate
        self.name = name
        self.probes = probes
        self.tensors = tensors

    def _collate(self, batch: list[Any]) -> Any:
        out = self.collate(batch)
        return to_torch(out) if self.tensors else out

    def __call__(self, batch: list[Any]) -> Any:
        if self.probes is None:
            return self._collate(batch)
        self.probes.stage(BATCH_STAGE).record(n_in=len(batch), n_out=1)
        out = self.probes.stage(self.name).call(self._collate, batch)
        self.probes.flush()
        return out


class _WorkerInit:
    def __init__(self, probes: Probes | None, user: Callable[[int], None] | None = None):
        self.probes = probes
        self.user = user

    def __call__(self, worker_id: int) -> None:
        if self.probes is not None:
            self.probes.worker_init(worker_id)
        if self.user is not None:
            self.user(worker_id)


def make_dataloader(
    dataset: Any,
    *,
    batch_size: int | None,
    collate_fn: Callable[[list[Any]], Any],
    config: Config,
    probes: Probes | None = None,
    collate_name: str = "collate",
    shuffle: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
    tensors: bool = True,
    **kwargs: Any,
) -> Any:
    """A ``torch.utils.data.DataLoader`` configured from the DataLoader knobs of ``config``.

    ``tensors``: numpy batches become tensors (see :func:`to_torch`); a user's own
    collate function keeps its output as it is with False.
    """
    from torch.utils.data import DataLoader  # lazy: heavy

    workers = int(config.get("num_workers", 0))
    opts: dict[str, Any] = {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": workers,
        "pin_memory": bool(config.get("pin_memory", False)),
        "collate_fn": ProbedCollate(collate_fn, collate_name, probes, tensors),
    }
    if workers > 0:
        opts["prefetch_factor"] = int(config.get("prefetch_factor", 2))
        opts["persistent_workers"] = bool(config.get("persistent_workers", False))
        if probes is not None:
            probes.stage(BATCH_STAGE)
            probes.stage(collate_name)
            probes.enable_workers(workers)
        opts["worker_init_fn"] = _WorkerInit(probes, worker_init_fn)
    elif worker_init_fn is not None:
        pass  # no workers: nothing to initialise
    opts.update(kwargs)
    return DataLoader(dataset, **opts)


class DataLoaderPipeline:
    """Re-iterable DataLoader over a spec; samples the parent's view of the output queue.

    ``tensors`` and ``loader_kwargs`` go to :func:`make_dataloader` (a user's own loader
    keeps its sampler, ``drop_last``, ``worker_init_fn``, ... and its collate's output).
    """

    def __init__(
        self,
        spec: PipelineSpec,
        config: Config,
        probes: Probes | None,
        *,
        tensors: bool = True,
        **loader_kwargs: Any,
    ) -> None:
        self.spec = spec
        self.probes = probes
        if probes is not None:
            for name in spec.stage_names():
                probes.stage(name)
        # torch warns when workers exceed cores; a trial of an I/O-bound stage asks for
        # that (it runs in its own measuring process, so the filter stays there)
        warnings.filterwarnings(
            "ignore", message="This DataLoader will create", category=UserWarning
        )
        self.dataset = torch_dataset(spec.items(), spec.element_stages, probes, config.get("cache"))
        batch_size = loader_kwargs.pop("batch_size", spec.batch_size)
        self.loader = make_dataloader(
            self.dataset,
            batch_size=batch_size,
            collate_fn=spec.collate.fn,
            config=config,
            probes=probes,
            collate_name=spec.collate.name,
            tensors=tensors,
            **loader_kwargs,
        )
        self.workers = int(config.get("num_workers", 0))

    def __iter__(self) -> Iterator[Any]:
        probes = self.probes
        if probes is None or self.workers == 0:
            yield from self.loader
            return
        probe = probes.stage(self.spec.collate.name)
        name = probe.name
        start = probes.snapshot()[name]["elements_out"]
        consumed = 0
        for batch in self.loader:
            consumed += 1
            if consumed % 4 == 1:  # batches the workers finished that the parent has not taken
                produced = probes.snapshot()[name]["elements_out"] - start
                probe.sample_queue(max(0, produced - consumed))
            yield batch


class _Replay:
    """A map-style dataset of ``n`` fresh copies of one batch: what a worker sends when
    the stages cost nothing (each copy new memory, as each real batch is)."""

    def __init__(self, batch: Any, n: int) -> None:
        self.batch = batch
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        return copy.deepcopy(self.batch)


def probe_delivery(
    batch: Any, consume: Callable[[Any], Any], *, batches: int = 48, seconds: float = 0.4
) -> dict[str, float]:
    """What DataLoader itself costs the consumer's thread per batch, and a worker's start-up.

    One worker replays fresh copies of ``batch`` (:class:`_Replay`, no auto-batching);
    the main thread's CPU (``time.thread_time``: waiting excluded, page faults included)
    per received batch, the batch's copy by ``consume`` included, is the consumer
    thread's cost when the stages run in workers: unpickling, rebuilding tensors from
    shared memory, touching their pages for the first time. The analysis uses it in
    place of the consumer's warm copy for worker configs. Start-up: iter() to the first
    batch (a fresh worker process each epoch unless ``persistent_workers``).
    """
    from torch.utils.data import DataLoader  # lazy: heavy

    replay: Any = _Replay(to_torch(batch), batches + 1)  # map-style: DataLoader takes it
    loader: Any = DataLoader(replay, batch_size=None, num_workers=1, prefetch_factor=4)
    t0 = time.perf_counter()
    it = iter(loader)
    consume(next(it))
    startup = time.perf_counter() - t0
    cpu0, n = time.thread_time(), 0
    deadline = time.perf_counter() + seconds
    for b in it:
        consume(b)
        n += 1
        if time.perf_counter() >= deadline:
            break
    cpu = time.thread_time() - cpu0
    del it  # shuts the worker down
    if n == 0:
        return {"worker_startup_seconds": startup}
    return {"delivery_seconds_per_batch": cpu / n, "worker_startup_seconds": startup}


class DataLoaderEngine(SpecEngine):
    """PyTorch DataLoader: one pool of worker processes (a GIL each) runs every stage."""

    name = "dataloader"
    per_stage_parallelism = False

    def preload(self) -> None:
        import torch.utils.data  # noqa: F401  # lazy: heavy

    def pool_size(self, config: Config) -> int:
        return max(1, int(config.get("num_workers") or 0))

    def delivery_costs(self, batch: Any, consume: Callable[[Any], Any]) -> dict[str, float]:
        return probe_delivery(batch, consume)

    def knobs(self, spec: PipelineSpec) -> dict[str, Knob]:
        return {
            "num_workers": IntKnob(0, spec.max_workers or default_max_parallelism()),
            "prefetch_factor": IntKnob(1, 8),
            "persistent_workers": ChoiceKnob((False, True)),
            "pin_memory": ChoiceKnob((False, True)),
            "cache": ChoiceKnob((None, *spec.cacheable(per_element_only=True))),
        }

    def naive_config(self, spec: PipelineSpec) -> Config:
        return {
            "num_workers": 0,
            "prefetch_factor": 2,
            "persistent_workers": False,
            "pin_memory": False,
            "cache": None,
        }

    def build(
        self, spec: PipelineSpec, config: Config, probes: Probes | None
    ) -> DataLoaderPipeline:
        return DataLoaderPipeline(spec, config, probes)
