"""Per-stage probes: counters a pipeline's stages report into while it runs.

Each stage keeps cumulative integer counters (elements in/out, wall and thread-CPU
nanoseconds inside the stage's own code, bytes out, nanoseconds spent waiting on
upstream, a running sum of sampled output-queue depths). A measurement takes two
snapshots and subtracts them, so counters never need resetting while a pipeline runs.

Thread safety: each thread updates its own counter rows (no lock on the hot path); a
snapshot sums the rows of every thread. Process safety (DataLoader workers): call
:meth:`Probes.enable_workers` in the parent before workers start; each worker calls
:meth:`Probes.worker_init` (the adapters do it in ``worker_init_fn``) and then
periodically copies its counters into its own slot of a shared-memory array, which the
parent sums.

Usage from plain Python::

    probes = Probes()
    decode = probes.wrap("decode", decode_fn)          # times every call
    for x in probes.iterate("read", read_records()):  # times every next()
        ...
    stats = probes.stats()
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from collectors.pipeline.api import StageStats

FIELDS = (
    "elements_in",
    "elements_out",
    "wall_ns",
    "cpu_ns",  # thread CPU of the calls whose CPU clock was read
    "cpu_wall_ns",  # wall time of those same calls (cpu = wall_ns * cpu_ns / cpu_wall_ns)
    "bytes_out",
    "wait_ns",
    "queue_sum",
    "queue_samples",
)
N_FIELDS = len(FIELDS)
IN, OUT, WALL, CPU, CPU_WALL, BYTES, WAIT, QSUM, QN = range(N_FIELDS)
STRIDE = N_FIELDS  # per-thread slot after the counters: read the CPU clock every STRIDE-th call
_FLUSH_EVERY_NS = 50_000_000  # a worker copies its counters to shared memory every 50 ms
# Reading CLOCK_THREAD_CPUTIME_ID is a system call, the wall clock (vDSO) is not. On this VM
# a read costs 1-3 us alone and far more in a busy multi-threaded pipeline (the syscall is a
# preemption point): reading it around every call cost 15% of the text pipeline's CPU in
# thread-parallel configs. So calls read the CPU clock on every SAMPLE_EVERY-th call only
# (and every call of 2 ms or longer, where two reads are < 0.5%); a stage's CPU time is its
# total wall time x (CPU / wall of the sampled calls), a ratio estimate that is exact when
# every call is sampled.
_EXACT_CPU_ABOVE_NS = 2_000_000
SAMPLE_EVERY = 8
_SCALARS = (int, float, bool, type(None), complex)
_PIL_BYTES_PER_PIXEL = {
    "1": 1, "L": 1, "P": 1, "LA": 2, "PA": 2, "I;16": 2, "RGB": 3, "YCbCr": 3, "LAB": 3,
    "HSV": 3, "RGBA": 4, "RGBa": 4, "RGBX": 4, "CMYK": 4, "I": 4, "F": 4,
}  # fmt: skip

_clock = time.perf_counter_ns
_cpu = time.thread_time_ns  # CLOCK_THREAD_CPUTIME_ID


def estimate_bytes(value: Any, _depth: int = 0) -> int:
    """Cheap size of a stage's output: nbytes of arrays/tensors, len of bytes/str.

    Containers are summed two levels deep; anything else counts 0 (unknown), never a
    deep ``sys.getsizeof`` walk, so the estimate costs well under a microsecond.
    """
    tp = type(value)
    if tp in _SCALARS:
        return 0
    if tp is bytes or tp is bytearray or tp is str:
        return len(value)
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, memoryview):
        return value.nbytes
    if _depth < 2:
        if isinstance(value, tuple | list):
            head = sum(estimate_bytes(v, _depth + 1) for v in value[:64])
            return head if len(value) <= 64 else head * len(value) // 64
        if isinstance(value, dict):
            return sum(estimate_bytes(v, _depth + 1) for v in value.values())
    mode = getattr(value, "mode", None)  # PIL images: (w, h) x bytes per pixel of the mode
    if isinstance(mode, str):  # (not getbands(): it costs ~10 us per call)
        size = getattr(value, "size", None)
        if isinstance(size, tuple) and len(size) == 2:
            return int(size[0]) * int(size[1]) * _PIL_BYTES_PER_PIXEL.get(mode, 1)
    return 0


class StageProbe:
    """The probe of one stage; obtained from :meth:`Probes.stage`."""

    __slots__ = ("_probes", "name", "index")

    def __init__(self, probes: Probes, name: str, index: int) -> None:
        self._probes = probes
        self.name = name
        self.index = index

    def _row(self) -> list[int]:
        return self._probes._thread_rows()[self.index]

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` as one element through this stage: counts 1 in, 1 out, times it.

        The element counts as *in* before ``fn`` runs, so in - out is what is in flight
        (how a hanging stage shows up).
        """
        row = self._row()
        row[IN] += 1
        if row[STRIDE] <= 1:
            w0 = _clock()
            c0 = _cpu()
            out = fn(*args, **kwargs)
            c1 = _cpu()
            w1 = _clock()
            row[CPU] += c1 - c0
            row[CPU_WALL] += w1 - w0
            row[STRIDE] = 1 if w1 - w0 >= _EXACT_CPU_ABOVE_NS else SAMPLE_EVERY
        else:
            w0 = _clock()
            out = fn(*args, **kwargs)
            w1 = _clock()
            row[STRIDE] -= 1
        row[OUT] += 1
        row[WALL] += w1 - w0
        row[BYTES] += estimate_bytes(out)
        if self._probes._slot >= 0:  # inside a worker process
            self._probes._maybe_flush()
        return out

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with every call timed and counted (picklable if ``fn`` is)."""
        return _Wrapped(self._probes, self.name, fn)

    def iterate(self, iterable: Iterable[Any], *, n_in: int = 1) -> Iterator[Any]:
        """Yield from ``iterable``, timing each ``next()`` as this stage's own work.

        Use it for sources (the time to produce an element is the stage's work).
        """
        it = iter(iterable)
        while True:
            row = self._row()
            sample = row[STRIDE] <= 1
            w0 = _clock()
            c0 = _cpu() if sample else 0
            try:
                item = next(it)
            except StopIteration:
                return
            if sample:
                c1 = _cpu()
                w1 = _clock()
                row[CPU] += c1 - c0
                row[CPU_WALL] += w1 - w0
                row[STRIDE] = 1 if w1 - w0 >= _EXACT_CPU_ABOVE_NS else SAMPLE_EVERY
            else:
                w1 = _clock()
                row[STRIDE] -= 1
            row[IN] += n_in
            row[OUT] += 1
            row[WALL] += w1 - w0
            row[BYTES] += estimate_bytes(item)
            self._probes._maybe_flush()
            yield item

    def record(
        self,
        *,
        n_in: int = 0,
        n_out: int = 0,
        wall_ns: int = 0,
        cpu_ns: int = 0,
        bytes_out: int = 0,
        wait_ns: int = 0,
    ) -> None:
        """Add raw counts (for adapters that time a stage themselves)."""
        row = self._row()
        row[IN] += n_in
        row[OUT] += n_out
        row[WALL] += wall_ns
        row[CPU] += cpu_ns
        row[CPU_WALL] += wall_ns
        row[BYTES] += bytes_out
        row[WAIT] += wait_ns

    def waited(self, ns: int) -> None:
        """This stage spent ``ns`` nanoseconds blocked on its upstream."""
        self._row()[WAIT] += ns

    def sample_queue(self, depth: int) -> None:
        """One observation of how many finished elements wait in this stage's output."""
        row = self._row()
        row[QSUM] += depth
        row[QN] += 1


class _Wrapped:
    """A picklable timed wrapper (DataLoader workers and spawn need to pickle it)."""

    __slots__ = ("probes", "name", "fn", "_stage")

    def __init__(self, probes: Probes, name: str, fn: Callable[..., Any]) -> None:
        self.probes = probes
        self.name = name
        self.fn = fn
        self._stage: StageProbe | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        stage = self._stage
        if stage is None:
            stage = self._stage = self.probes.stage(self.name)
        return stage.call(self.fn, *args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {"probes": self.probes, "name": self.name, "fn": self.fn}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.probes = state["probes"]
        self.name = state["name"]
        self.fn = state["fn"]
        self._stage = None


Counters = dict[str, dict[str, int]]


class Probes:
    """All stage probes of one pipeline (implements ``api.ProbeSink``).

    ``stages`` fixes the stage names up front (required for worker processes, whose
    shared slots are laid out by stage index); other names are added on first use in
    the owning process.
    """

    def __init__(self, stages: Iterable[str] = ()) -> None:
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all_rows: list[list[list[int]]] = []  # one table per thread
        self._shared: Any = None  # multiprocessing RawArray of int64, slots x stages x fields
        self._max_workers = 0
        self._slot = -1  # >= 0 inside a worker process
        self._owner_pid = os.getpid()
        self._last_flush = 0
        for name in stages:
            self._add(name)

    # -- stages ---------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._names)

    def _add(self, name: str) -> int:
        with self._lock:
            if name in self._index:
                return self._index[name]
            if self._shared is not None:
                raise ValueError(f"stage {name!r} was not declared before enable_workers()")
            self._index[name] = len(self._names)
            self._names.append(name)
            for rows in self._all_rows:
                rows.append([0] * (N_FIELDS + 1))
            return self._index[name]

    def stage(self, name: str) -> StageProbe:
        idx = self._index.get(name)
        if idx is None:
            idx = self._add(name)
        return StageProbe(self, name, idx)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed and counted as stage ``name``."""
        self.stage(name)
        return _Wrapped(self, name, fn)

    def iterate(self, name: str, iterable: Iterable[Any]) -> Iterator[Any]:
        """``iterable`` with each ``next()`` timed and counted as stage ``name``."""
        return self.stage(name).iterate(iterable)

    # -- per-thread rows ------------------------------------------------------------
    def _thread_rows(self) -> list[list[int]]:
        rows = getattr(self._local, "rows", None)
        if rows is None:  # first event of this thread (stages added later extend it in _add)
            with self._lock:
                rows = [[0] * (N_FIELDS + 1) for _ in self._names]
                self._local.rows = rows
                self._all_rows.append(rows)
        return rows

    def produced(self, stage: StageProbe) -> int:
        """Elements ``stage`` has output so far in this process (cheap: no worker slots)."""
        i = stage.index
        with self._lock:
            tables = list(self._all_rows)
        return sum(rows[i][OUT] for rows in tables)

    # -- worker processes -------------------------------------------------------------
    def enable_workers(self, max_workers: int) -> None:
        """Allocate shared memory for ``max_workers`` worker processes (call in the parent)."""
        import multiprocessing

        if max_workers <= self._max_workers and self._shared is not None:
            return
        size = max(1, max_workers) * len(self._names) * N_FIELDS
        self._shared = multiprocessing.RawArray("q", size)
        self._max_workers = max(1, max_workers)

    def worker_init(self, worker_id: int) -> None:
        """Start counting in a worker process: fresh counters, written to slot ``worker_id``."""
        if self._shared is None:
            raise RuntimeError("Probes.enable_workers() must run in the parent first")
        if not 0 <= worker_id < self._max_workers:
            raise ValueError(f"worker id {worker_id} outside 0..{self._max_workers - 1}")
        self._slot = worker_id
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all_rows = []
        self._last_flush = 0
        # Counters inherited by fork are the parent's: drop them. Start from what earlier
        # workers with this id left in the slot (non-persistent workers restart each epoch).
        n = len(self._names) * N_FIELDS
        base = worker_id * n
        flat = list(self._shared[base : base + n])
        rows = [[*flat[i * N_FIELDS : (i + 1) * N_FIELDS], 0] for i in range(len(self._names))]
        self._local.rows = rows
        self._all_rows.append(rows)

    def _maybe_flush(self) -> None:
        if self._slot >= 0:
            now = _clock()
            if now - self._last_flush >= _FLUSH_EVERY_NS:
                self.flush()

    def flush(self) -> None:
        """Copy this worker's counters into its shared slot (no-op outside workers)."""
        if self._slot < 0:
            return
        self._last_flush = _clock()
        total = self._sum_local()
        n = len(self._names) * N_FIELDS
        base = self._slot * n
        self._shared[base : base + n] = [v for row in total for v in row]

    # -- reading ----------------------------------------------------------------------
    def _sum_local(self) -> list[list[int]]:
        total = [[0] * N_FIELDS for _ in self._names]
        with self._lock:
            tables = list(self._all_rows)
        for rows in tables:
            for i, row in enumerate(rows):
                t = total[i]
                for f in range(N_FIELDS):
                    t[f] += row[f]
        return total

    def snapshot(self) -> Counters:
        """Cumulative counters per stage: this process's threads plus all worker slots."""
        total = self._sum_local()
        if self._shared is not None and self._slot < 0:
            n = len(self._names) * N_FIELDS
            flat = list(self._shared)
            for w in range(self._max_workers):
                base = w * n
                for i in range(len(self._names)):
                    off = base + i * N_FIELDS
                    t = total[i]
                    for f in range(N_FIELDS):
                        t[f] += flat[off + f]
        return {
            name: dict(zip(FIELDS, total[i], strict=True)) for i, name in enumerate(self._names)
        }

    def stats(
        self,
        since: Counters | None = None,
        until: Counters | None = None,
        parallelism: Mapping[str, int] | None = None,
    ) -> list[StageStats]:
        """Stage stats over a window: ``until`` (default now) minus ``since`` (default 0)."""
        end = until if until is not None else self.snapshot()
        out = []
        for name in self._names:
            e = end.get(name, dict.fromkeys(FIELDS, 0))
            s = (since or {}).get(name, dict.fromkeys(FIELDS, 0))
            d = {f: e[f] - s.get(f, 0) for f in FIELDS}
            cpu_ns = float(d["cpu_ns"])
            if d["cpu_wall_ns"] > 0 and d["cpu_wall_ns"] < d["wall_ns"]:  # sampled: scale up
                cpu_ns = d["cpu_ns"] * d["wall_ns"] / d["cpu_wall_ns"]
            out.append(
                StageStats(
                    name=name,
                    elements_in=d["elements_in"],
                    elements_out=d["elements_out"],
                    wall_seconds=d["wall_ns"] / 1e9,
                    cpu_seconds=cpu_ns / 1e9,
                    bytes_out=d["bytes_out"],
                    wait_seconds=d["wait_ns"] / 1e9,
                    queue_occupancy=d["queue_sum"] / d["queue_samples"]
                    if d["queue_samples"]
                    else 0.0,
                    parallelism=int((parallelism or {}).get(name, 1)),
                )
            )
        return out

    # -- pickling (worker processes get the shared array, not the parent's rows) --------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "names": self._names,
            "shared": self._shared,
            "max_workers": self._max_workers,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["names"])  # type: ignore[misc]
        self._shared = state["shared"]
        self._max_workers = state["max_workers"]
