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

GIL share (:meth:`Probes.keep_inputs`, :meth:`Probes.gil_shares`): engines that run stages
as threads of one interpreter (torchdata.nodes, plain Python thread pools) only scale as
far as the stages' Python code lets go of the GIL. While keeping inputs, each wrapped
stage keeps a small reservoir of the arguments it was called with; afterwards
:func:`gil_share` replays them through the stage function in one thread and in two, and
takes the share of time the two threads spend blocked on each other as the stage's
serialized (GIL-holding) share: Amdahl's law on an idle host, robust to a busy one.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from random import random as _random
from typing import Any

from placer.contracts.pipeline import StageStats

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

#: Inputs a stage keeps for the GIL check (reservoir sampling over the measured window).
RESERVOIR = 32
#: Attribute that marks a stage function as not replayable (see :func:`side_effects`).
SIDE_EFFECTS_ATTR = "placer_side_effects"


def side_effects(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``fn`` as a stage that must not be called twice on one input (it writes,
    sends, consumes its input): the GIL check skips it and its share stays unknown."""
    setattr(fn, SIDE_EFFECTS_ATTR, True)
    return fn


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
        if self._probes._keep:
            self._probes._offer(self.index, fn, args, kwargs)
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
        # GIL check: per stage index, the function and a reservoir of (args, kwargs)
        self._keep = 0
        self._kept: dict[int, tuple[Callable[..., Any], list[Any], list[int]]] = {}
        self._no_replay: set[int] = set()
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

    # -- inputs for the GIL check ----------------------------------------------------
    def keep_inputs(self, k: int = RESERVOIR) -> None:
        """Keep a uniform sample of up to ``k`` inputs per wrapped stage from now on
        (``k=0``: stop keeping; what was kept stays until the next start)."""
        if k > 0:
            self._kept = {}
            self._no_replay = set()
        self._keep = max(int(k), 0)

    def _offer(
        self, index: int, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        # Algorithm R; racing threads may drop or overwrite a sample, which is harmless.
        if index in self._no_replay:
            return
        entry = self._kept.get(index)
        if entry is None:
            if getattr(fn, SIDE_EFFECTS_ATTR, False):
                self._no_replay.add(index)
                return
            entry = self._kept.setdefault(index, (fn, [], [0]))
        kept, seen = entry[1], entry[2]
        seen[0] += 1
        if len(kept) < self._keep:
            kept.append((args, kwargs))
        else:
            j = int(_random() * seen[0])
            if j < self._keep:
                kept[j] = (args, kwargs)

    def kept_inputs(self, name: str) -> tuple[Callable[..., Any], list[Any]] | None:
        """The stage's function and its kept ``(args, kwargs)`` (None: nothing kept)."""
        idx = self._index.get(name)
        entry = self._kept.get(idx) if idx is not None else None
        if entry is None or not entry[1]:
            return None
        return entry[0], list(entry[1])

    def gil_shares(self, **kwargs: Any) -> dict[str, float | None]:
        """:func:`gil_share` of every stage that kept inputs (``kwargs`` go to it)."""
        out: dict[str, float | None] = {}
        for name in self._names:
            kept = self.kept_inputs(name)
            if kept is not None:
                out[name] = gil_share(kept[0], kept[1], **kwargs)
        return out

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


# -- GIL share ---------------------------------------------------------------------------

_SCHEDSTAT = "/proc/thread-self/schedstat"


def _run_delay_ns() -> int | None:
    """Nanoseconds this thread has waited on a run queue (ready, no core), or None."""
    try:
        with open(_SCHEDSTAT) as fh:
            return int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _window(
    fn: Callable[..., Any], items: list[Any], seconds: float, threads: int
) -> list[tuple[float, float, float, int]] | None:
    """Call ``fn`` over ``items`` (round robin, split between ``threads`` threads) for
    ``seconds``; per thread (wall since the start, thread CPU, run-queue delay in
    seconds, calls), None without schedstat. All threads run for the whole window (no thread
    idles at the end while another finishes its share)."""
    out: list[tuple[float, float, float, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    t0 = [0]
    span = int(seconds * 1e9)

    def work(chunk: list[Any], go: threading.Event) -> None:
        d0, c0 = _run_delay_ns(), _cpu()  # before the start: waiting for the GIL counts
        go.wait()
        calls = 0
        end = t0[0] + span
        try:
            while True:
                for a, kw in chunk:
                    fn(*a, **kw)
                    calls += 1
                    if _clock() >= end:
                        break
                else:
                    continue
                break
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller
            errors.append(exc)
        w1, c1, d1 = _clock(), _cpu(), _run_delay_ns()
        if d0 is None or d1 is None:
            return
        with lock:
            out.append(((w1 - t0[0]) / 1e9, (c1 - c0) / 1e9, (d1 - d0) / 1e9, calls))

    go = threading.Event()
    pool = [
        threading.Thread(target=work, args=(items[i::threads], go), daemon=True)
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    time.sleep(0.001)  # let every thread reach go.wait()
    t0[0] = _clock()  # the workers stop themselves: this thread would wait for the GIL
    go.set()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return out if len(out) == threads else None


def gil_share(
    fn: Callable[..., Any],
    inputs: list[Any],
    *,
    repeats: int = 3,
    window_seconds: float = 0.025,
    max_call_seconds: float = 0.05,
) -> float | None:
    """Share of ``fn``'s time that is serialized in this interpreter (holds the GIL).

    ``inputs`` are ``(args, kwargs)`` pairs. Per repeat, ``fn`` runs over the inputs for
    ``window_seconds`` in one thread, then in two concurrent threads (both busy for the
    whole window). A thread that needs the GIL while the other holds it is *blocked*:
    neither on a core nor waiting for one. Per thread, blocked = wall − thread CPU −
    run-queue delay (``/proc/thread-self/schedstat``); what the stage is blocked on alone
    (sleeps, I/O: the one-thread run's blocked time per call) is taken out, the rest is
    GIL wait. Two threads that hold the GIL all the time each wait half of the window, so
    ``g = 2 × GIL wait / wall``, summed over the two threads: 1 for pure Python, 0 for
    code that releases the GIL. On an idle two-core host this is Amdahl's law
    (``wall2/wall1 = g + (1-g)/2`` for the same work), but a busy host, which delays
    threads on the run queue without blocking them, is not mistaken for a serialized
    stage. Threads that hold the GIL only part of the time may interleave without
    waiting, so ``g`` is at most the share of the stage's time that holds it: a bound
    built on it stays an upper bound.

    Returns the median over ``repeats``, clipped to [0, 1]; None when unknown: no
    schedstat (not Linux), a replay raised, or one call takes longer than
    ``max_call_seconds``. Cost: about ``repeats × 2 × window_seconds`` plus two calls.
    """
    items = [x for x in inputs if isinstance(x, tuple) and len(x) == 2]
    if len(items) < 2 or _run_delay_ns() is None:
        return None
    interval = sys.getswitchinterval()
    try:
        w0 = _clock()
        for a, kw in items[:2]:  # warm up; also measures one call
            fn(*a, **kw)
        per_call = (_clock() - w0) / 2e9
        if per_call > max_call_seconds:
            return None
        window = max(window_seconds, 4 * per_call)
        shares: list[float] = []
        # No forced GIL hand-offs while measuring: a thread gets the GIL when the holder
        # lets go of it (I/O, C code that releases it), not every 5 ms. Each forced hand-off
        # wakes the waiting thread, which on a busy host then waits on the run queue, and
        # that delay would hide the GIL wait; the holder's own releases are what matter.
        sys.setswitchinterval(max(interval, 10 * window))
        for _ in range(max(repeats, 1)):
            one = _window(fn, items, window, 1)
            two = _window(fn, items, window, 2)
            if not one or not two:
                return None
            wall1, cpu1, delay1, calls1 = one[0]
            if calls1 <= 0:
                continue
            alone = max(wall1 - cpu1 - delay1, 0.0) / calls1  # blocked per call, 1 thread
            walls = waited = 0.0
            for wall, cpu, delay, calls in two:
                waited += max(wall - cpu - delay - alone * calls, 0.0)
                walls += wall
            shares.append(min(max(2.0 * waited / max(walls, 1e-9), 0.0), 1.0))
    except Exception:  # noqa: BLE001 - a stage that cannot be replayed: unknown
        return None
    finally:
        sys.setswitchinterval(interval)
    return statistics.median(shares) if shares else None
