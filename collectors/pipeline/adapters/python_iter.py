"""Plain Python engine: generators, one thread pool per parallel stage, a prefetch thread.

Also the shared pieces other adapters reuse: the per-epoch cache and the probe hooks for
pulling from an upstream iterator (wait time, output-queue occupancy).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from placer.collectors.pipeline.engine import SpecEngine
from placer.collectors.pipeline.probe import Probes, StageProbe
from placer.collectors.pipeline.spec import BATCH_STAGE, PipelineSpec, StageSpec
from placer.contracts.pipeline import Config

_clock = time.perf_counter_ns
_END = object()


class EpochCache:
    """Elements after one stage, kept once a whole epoch went through it.

    Only a *complete* epoch fills the cache (a partial one is dropped), so a cached epoch
    replays exactly the elements, in order, that the stages produced.
    """

    def __init__(self, stage: str | None) -> None:
        self.stage = stage
        self.elements: list[Any] | None = None
        self.bytes = 0

    @property
    def ready(self) -> bool:
        return self.elements is not None

    def tap(self, it: Iterator[Any]) -> Iterator[Any]:
        filling: list[Any] = []
        for x in it:
            filling.append(x)
            yield x
        self.elements = filling


def _pull(it: Iterator[Any], probe: StageProbe | None) -> Any:
    """next(it) with the time spent blocked counted as ``probe``'s wait; _END at the end."""
    if probe is None:
        return next(it, _END)
    t0 = _clock()
    x = next(it, _END)
    probe.waited(_clock() - t0)
    return x


def map_stage(
    upstream: Iterator[Any],
    fn: Callable[[Any], Any],
    parallelism: int,
    probe: StageProbe | None,
) -> Iterator[Any]:
    """Ordered map with ``parallelism`` threads and at most 2x that many elements in flight."""
    if parallelism <= 1:
        while True:
            x = _pull(upstream, probe)
            if x is _END:
                return
            yield fn(x)
    pool = ThreadPoolExecutor(max_workers=parallelism)
    window: deque[Future[Any]] = deque()
    limit = 2 * parallelism
    try:
        exhausted = False
        pulled = 0
        while True:
            while not exhausted and len(window) < limit:
                x = _pull(upstream, probe)
                if x is _END:
                    exhausted = True
                    break
                window.append(pool.submit(fn, x))
            if not window:
                return
            pulled += 1
            if probe is not None and pulled % 4 == 1:  # finished, not yet consumed
                probe.sample_queue(sum(1 for f in window if f.done()))
            yield window.popleft().result()
    finally:
        for f in window:
            f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


def batch_stage(upstream: Iterator[Any], size: int, probe: StageProbe | None) -> Iterator[Any]:
    """Group ``size`` elements into a list (the last batch may be short)."""
    while True:
        w0 = _clock()
        batch: list[Any] = []
        waited = 0
        while len(batch) < size:
            t0 = _clock()
            x = next(upstream, _END)
            waited += _clock() - t0
            if x is _END:
                break
            batch.append(x)
        if not batch:
            return
        if probe is not None:
            probe.record(n_in=len(batch), n_out=1, wall_ns=_clock() - w0 - waited, wait_ns=waited)
        yield batch


def prefetch_stage(upstream: Iterator[Any], depth: int, probe: StageProbe | None) -> Iterator[Any]:
    """Run ``upstream`` in a background thread, ``depth`` results ahead of the consumer."""
    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    error: list[BaseException] = []

    def produce() -> None:
        try:
            for x in upstream:
                while not stop.is_set():
                    try:
                        q.put(x, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            error.append(exc)
        finally:
            close = getattr(upstream, "close", None)
            if close is not None:
                close()
            while not stop.is_set():
                try:
                    q.put(_END, timeout=0.05)
                    break
                except queue.Full:
                    continue

    t = threading.Thread(target=produce, name="placer-prefetch", daemon=True)
    t.start()
    try:
        while True:
            if probe is not None:
                probe.sample_queue(q.qsize())
            x = q.get()
            if x is _END:
                if error:
                    raise error[0]
                return
            yield x
    finally:
        stop.set()
        t.join(timeout=2.0)


class PythonPipeline:
    """Re-iterable: each ``iter()`` is one epoch over the spec's items."""

    def __init__(self, spec: PipelineSpec, config: Config, probes: Probes | None) -> None:
        self.spec = spec
        self.config = config
        self.probes = probes
        self.cache = EpochCache(config.get("cache"))
        if probes is not None:
            for name in spec.stage_names():
                probes.stage(name)

    def _probe(self, name: str) -> StageProbe | None:
        return self.probes.stage(name) if self.probes is not None else None

    def _fn(self, s: StageSpec) -> Callable[[Any], Any]:
        return self.probes.wrap(s.name, s.fn) if self.probes is not None else s.fn

    def _par(self, s: StageSpec) -> int:
        return int(self.config.get(f"parallelism.{s.name}", 1)) if s.parallel else 1

    def __iter__(self) -> Iterator[Any]:
        spec = self.spec
        cache = self.cache
        stages = list(spec.stages)
        if cache.stage is not None and cache.ready:
            assert cache.elements is not None
            it: Iterator[Any] = iter(cache.elements)
            idx = [s.name for s in stages].index(cache.stage)
            stages = stages[idx + 1 :]
            tapped = True
        else:
            it = iter(spec.items())
            tapped = False
        batched = False
        for s in stages:
            if s.kind == "collate" and not batched:
                it = batch_stage(it, spec.batch_size, self._probe(BATCH_STAGE))
                batched = True
            it = map_stage(it, self._fn(s), self._par(s), self._probe(s.name))
            if not tapped and s.name == cache.stage:
                it = cache.tap(it)
                tapped = True
        if not batched:  # cache was the collate stage: batches come from the cache
            pass
        depth = int(self.config.get("prefetch", 0))
        if depth > 0:
            it = prefetch_stage(it, depth, self._probe(spec.collate.name))
        return it


class PythonEngine(SpecEngine):
    """Plain Python: a thread pool per parallel stage, all in this interpreter."""

    name = "python"
    shares_gil = True

    def build(self, spec: PipelineSpec, config: Config, probes: Probes | None) -> PythonPipeline:
        return PythonPipeline(spec, config, probes)
