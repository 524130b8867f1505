"""Short benchmarks of one pipeline configuration, and what the host offers.

:func:`measure` runs a built pipeline in a forked child process (its own process group,
so DataLoader workers die with it) and enforces a hard deadline from the parent: a
hanging stage cannot hang the caller. It never raises for a pipeline's failure; the
returned :class:`Measurement` says ``status="timeout"`` or ``status="error"`` with a
one-line ``error`` (for a timeout, which stages had elements in flight). Only bad
arguments raise (:class:`placer.errors.InvalidInputError`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
import traceback
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from placer.collectors.pipeline.adapters import engine_named
from placer.collectors.pipeline.engine import usable_cores
from placer.collectors.pipeline.probe import RESERVOIR, Counters, Probes, gil_share
from placer.contracts.pipeline import Config, HostFacts, Measurement, PipelineDef, StageStats
from placer.errors import InvalidInputError

_HEARTBEAT_SECONDS = 0.25


def batch_samples(batch: Any, default: int) -> int:
    """Samples in one batch: ``batch["num_samples"]`` if given, else the leading dimension
    of the first array in it, else ``default``."""
    if isinstance(batch, Mapping):
        n = batch.get("num_samples")
        if isinstance(n, int):
            return n
        batch = next(iter(batch.values()), None)
    if isinstance(batch, tuple | list) and batch:
        first = batch[0]
        shape = getattr(first, "shape", None)
        if shape is not None and len(shape) > 0:
            return int(shape[0])
        return len(batch)
    shape = getattr(batch, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return default


def _in_flight(counters: Counters | None) -> list[str]:
    """Stages that started elements they have not finished (map stages count in first)."""
    if not counters:
        return []
    return [
        name
        for name, c in counters.items()
        if name != "batch" and c["elements_in"] > c["elements_out"]
    ]


def _peak_rss() -> int:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return int((own + kids) * 1024)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return out


def tree_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, its reaped children and its live
    descendants (DataLoader workers), read from getrusage and /proc/<pid>/stat."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    stack = _children(os.getpid())
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        stack.extend(_children(pid))
    return total


class Consumer:
    """What the measuring loop does with each batch: materialize it, as a training step must.

    Every array-like leaf of the batch (numpy arrays, torch and TensorFlow tensors, bytes,
    PIL images, lists of numbers) is copied once into a reusable buffer — the cheapest
    thing a real consumer does (a host-to-device copy, ``torch.as_tensor``). Without it a
    cache of finished batches "delivers" the same objects again at billions of samples/s,
    a rate no training step can take. Strings count their encoded length.
    """

    def __init__(self) -> None:
        self._buf = bytearray(1 << 20)
        self.bytes = 0
        self.seconds = 0.0

    def _copy(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        n = view.nbytes
        if n > len(self._buf):
            self._buf = bytearray(max(n, 2 * len(self._buf)))
        self._buf[:n] = view
        return n

    def _leaf(self, x: Any) -> int:
        if x is None or isinstance(x, bool | int | float):
            return 8
        if isinstance(x, str):
            return len(x.encode())
        if isinstance(x, bytes | bytearray | memoryview):
            return self._copy(x)
        if isinstance(x, Mapping):
            return sum(self._leaf(v) for v in x.values())
        numpy = getattr(x, "numpy", None)  # torch / TensorFlow tensors
        if callable(numpy) and not hasattr(x, "__array_interface__"):
            try:
                x = numpy()
            except Exception:  # noqa: BLE001 - e.g. a tensor that needs .detach()
                x = x.detach().cpu().numpy()
        if hasattr(x, "__array_interface__") or hasattr(x, "__array__"):
            import numpy as np  # lazy: heavy

            arr = np.ascontiguousarray(x)
            if arr.dtype == object:
                return sum(self._leaf(v) for v in arr.ravel())
            return self._copy(arr)
        tobytes = getattr(x, "tobytes", None)  # PIL images
        if callable(tobytes):
            return self._copy(tobytes())
        if isinstance(x, list | tuple):
            if x and all(isinstance(v, int | float) and not isinstance(v, bool) for v in x):
                import numpy as np  # lazy: heavy

                return self._copy(np.asarray(x))
            return sum(self._leaf(v) for v in x)
        return 0

    def __call__(self, batch: Any) -> None:
        t0 = time.perf_counter()
        self.bytes += self._leaf(batch)
        self.seconds += time.perf_counter() - t0


def consume(
    pipeline: Any,
    *,
    batch_size: int,
    max_batches: int,
    max_seconds: float,
    warmup_batches: int = 0,
    min_epochs: int = 0,
    materialize: bool = True,
    on_phase: Any = None,
    on_batch: Any = None,
    epoch_wait_seconds: float | None = None,
    keep_last: list[Any] | None = None,
) -> dict[str, Any]:
    """Iterate ``pipeline`` epoch after epoch (each ``iter()`` is one) as a consumer.

    ``warmup_batches`` are taken first and not counted; then batches are counted until
    ``max_batches``, or until ``max_seconds`` have passed *and* ``min_epochs`` epochs
    (counted from the start, warmup included) are complete — or, for a stream whose
    ``iter()`` never ends, until ``epoch_wait_seconds`` from the start have passed (then
    the epoch rates stay None). Returns the window's counts,
    the consumer's cost and the split between the first epoch and the later ones.
    ``keep_last`` gets the last batch appended (for the consumer's GIL check).
    """
    consumer = Consumer() if materialize else None
    ends: list[float] = []  # perf_counter at the end of each completed epoch

    def batches() -> Iterator[Any]:
        while True:
            n = 0
            for b in pipeline:
                n += 1
                yield b
            ends.append(time.perf_counter())
            if n == 0:  # a one-shot iterable (or empty dataset): no further epochs
                return

    it = batches()
    started = time.perf_counter()
    give_up = started + epoch_wait_seconds if epoch_wait_seconds is not None else math.inf
    warm_samples = 0
    first_batch: float | None = None
    for _ in range(warmup_batches):
        b = next(it, None)
        if b is None:
            break
        if first_batch is None:
            first_batch = time.perf_counter() - started
        warm_samples += batch_samples(b, batch_size)
        if consumer is not None:
            consumer(b)
    if on_phase is not None:
        on_phase("measure")
    c_seconds0 = consumer.seconds if consumer is not None else 0.0
    c_bytes0 = consumer.bytes if consumer is not None else 0
    warm_epochs = len(ends)
    n_batches = n_samples = 0
    last: Any = None
    first_samples = seen = warm_samples  # warmup included
    waited = 0.0
    t0 = time.perf_counter()
    deadline = t0 + max_seconds
    while n_batches < max_batches:
        w0 = time.perf_counter()
        b = next(it, None)
        now = time.perf_counter()
        if b is None:
            break
        waited += now - w0
        last = b
        if consumer is not None:
            consumer(b)
        k = batch_samples(b, batch_size)
        n_batches += 1
        n_samples += k
        seen += k
        if first_batch is None:
            first_batch = now - started
        if len(ends) == warm_epochs == 0:
            first_samples += k
        if on_batch is not None:
            on_batch(n_batches)
        if now >= deadline and (len(ends) >= min_epochs or now >= give_up):
            break
    t_end = time.perf_counter()
    # The first epoch is timed from the first next(): start-up (worker spawn, lazy imports)
    # and the warmup are inside it. Timing it from the end of the warmup would credit the
    # work prefetchers and parallel workers did during the warmup, a head start that is a
    # large part of a short epoch.
    first_rate = steady_rate = None
    if ends and warm_epochs == 0 and ends[0] > started and first_samples > 0:
        first_rate = first_samples / (ends[0] - started)
    later = seen - first_samples
    if ends and warm_epochs == 0 and later > 0 and t_end > ends[0]:
        steady_rate = later / (t_end - ends[0])
    close = getattr(it, "close", None)
    if close is not None:
        close()
    if keep_last is not None and last is not None:
        keep_last.append(last)
    best_copy: float | None = None
    if consumer is not None and last is not None:
        # The best case of the consumer's copy (warm memory, no other thread in the way):
        # what the analysis may use as a bound without it ever being beaten.
        t_sum, b_sum = consumer.seconds, consumer.bytes
        times = []
        for _ in range(5):
            t = consumer.seconds
            consumer(last)
            times.append(consumer.seconds - t)
        best_copy = min(times)
        consumer.seconds, consumer.bytes = t_sum, b_sum
    return {
        "batches": n_batches,
        "samples": n_samples,
        "wall_seconds": t_end - t0,
        "consumer_wait_seconds": waited,
        "consumer_seconds": (consumer.seconds - c_seconds0) if consumer is not None else 0.0,
        "bytes_consumed": (consumer.bytes - c_bytes0) if consumer is not None else 0,
        "first_epoch_samples_per_second": first_rate,
        "steady_samples_per_second": steady_rate,
        "epochs_completed": len(ends),
        "first_batch_seconds": first_batch,
        "consumer_best_seconds_per_batch": best_copy,
    }


def _run(
    defn: PipelineDef,
    config: Config,
    max_batches: int,
    max_seconds: float,
    warmup_batches: int,
    use_probes: bool,
    min_epochs: int = 0,
    materialize: bool = True,
    epoch_wait_seconds: float | None = None,
    gil_check: bool = False,
    engine_probe: bool = False,
    send: Any = None,
    state: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The benchmark loop. ``state`` (phase, batches, probes) is what heartbeats report.

    ``gil_check`` (with probes): stages keep a reservoir of their inputs during the
    window; afterwards each stage and the consumer is replayed in one and two threads
    (:func:`placer.collectors.pipeline.probe.gil_share`) for its GIL share.
    """
    probes = Probes([s.name for s in defn.stages]) if use_probes else None
    gil_check = gil_check and probes is not None
    state = state if state is not None else {}
    state.update({"batches": 0, "phase": "build", "probes": probes})

    pipeline = defn.build(dict(config), probes)
    state["phase"] = "warmup"
    marks: dict[str, Any] = {}
    last: list[Any] = []

    def on_phase(phase: str) -> None:
        state["phase"] = phase
        marks["since"] = probes.snapshot() if probes is not None else None
        marks["cpu0"] = tree_cpu_seconds()
        if gil_check and probes is not None:
            probes.keep_inputs(RESERVOIR)

    def on_batch(n: int) -> None:
        state["batches"] = n

    data = consume(
        pipeline,
        batch_size=defn.batch_size,
        max_batches=max_batches,
        max_seconds=max_seconds,
        warmup_batches=warmup_batches,
        min_epochs=min_epochs,
        materialize=materialize,
        on_phase=on_phase,
        on_batch=on_batch,
        epoch_wait_seconds=epoch_wait_seconds,
        keep_last=last if gil_check or engine_probe else None,
    )
    cpu = tree_cpu_seconds() - marks["cpu0"]
    stats: list[StageStats] = []
    if probes is not None:
        workers = engine_named(defn.engine).stage_parallelism(defn, config)
        stats = probes.stats(since=marks["since"], parallelism=workers)
    extra: dict[str, Any] = {}
    if gil_check and probes is not None:
        state["phase"] = "gil-check"
        probes.keep_inputs(0)
        t0 = time.perf_counter()
        shares = probes.gil_shares()
        stats = [dataclasses.replace(st, gil_share=shares.get(st.name)) for st in stats]
        if last:
            extra["consumer_gil_share"] = gil_share(Consumer(), [((last[0],), {})] * 4)
        extra["gil_check_seconds"] = time.perf_counter() - t0
    if engine_probe and last:
        state["phase"] = "engine-probe"
        extra.update(engine_named(defn.engine).delivery_costs(last[0], Consumer()))
    return {
        **data,
        **extra,
        "stages": stats,
        "process_cpu_seconds": cpu,
        "peak_rss_bytes": _peak_rss(),
    }


def _preload(engine: str) -> None:
    """Import the engine here once, so each forked trial does not pay seconds for it."""
    try:
        engine_named(engine).preload()
    except ImportError:
        pass  # the child reports the missing engine as the measurement's error


def _one_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {msg[0] if msg else ''}{where}"


def _child(conn: Any, args: tuple[Any, ...]) -> None:
    os.setpgrp()  # our DataLoader workers join our group; the parent kills the group
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    code = 0
    lock = threading.Lock()
    state: dict[str, Any] = {"phase": "build", "batches": 0, "probes": None}
    finished = threading.Event()

    def send(msg: Any) -> None:
        with lock:
            conn.send(msg)

    def beat() -> None:  # reports progress even while the main thread hangs in a stage
        while not finished.wait(_HEARTBEAT_SECONDS):
            probes = state.get("probes")
            try:
                snap = probes.snapshot() if probes is not None else None
                send(("progress", state["phase"], state["batches"], snap))
            except Exception:  # noqa: BLE001 - the parent may be gone; nothing to report to
                return

    threading.Thread(target=beat, name="placer-heartbeat", daemon=True).start()
    try:
        result = _run(*args, send=send, state=state)  # type: ignore[misc]
        finished.set()
        send(("done", result))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, never raised there
        finished.set()
        try:
            send(("error", _one_line(exc)))
        except Exception:  # noqa: BLE001
            code = 1
    finally:
        conn.close()
    os._exit(code)


def _result(
    defn: PipelineDef,
    config: Config,
    host: HostFacts,
    *,
    status: str = "ok",
    error: str | None = None,
    data: dict[str, Any] | None = None,
) -> Measurement:
    d = data or {}
    wall = float(d.get("wall_seconds", 0.0))
    samples = int(d.get("samples", 0))
    return Measurement(
        config=dict(config),
        samples_per_second=samples / wall if wall > 0 and status == "ok" else 0.0,
        batches=int(d.get("batches", 0)),
        samples=samples,
        wall_seconds=wall,
        stages=list(d.get("stages", [])),
        host=host,
        peak_rss_bytes=int(d.get("peak_rss_bytes", 0)),
        error=error,
        status=status,
        consumer_wait_seconds=float(d.get("consumer_wait_seconds", 0.0)),
        process_cpu_seconds=float(d.get("process_cpu_seconds", 0.0)),
        consumer_seconds=float(d.get("consumer_seconds", 0.0)),
        bytes_consumed=int(d.get("bytes_consumed", 0)),
        first_epoch_samples_per_second=d.get("first_epoch_samples_per_second")
        if status == "ok"
        else None,
        steady_samples_per_second=d.get("steady_samples_per_second") if status == "ok" else None,
        epochs_completed=int(d.get("epochs_completed", 0)),
        first_batch_seconds=d.get("first_batch_seconds") if status == "ok" else None,
        consumer_best_seconds_per_batch=d.get("consumer_best_seconds_per_batch")
        if status == "ok"
        else None,
        consumer_gil_share=d.get("consumer_gil_share") if status == "ok" else None,
        gil_check_seconds=float(d.get("gil_check_seconds", 0.0)),
        delivery_seconds_per_batch=d.get("delivery_seconds_per_batch") if status == "ok" else None,
        worker_startup_seconds=d.get("worker_startup_seconds") if status == "ok" else None,
    )


def measure(
    defn: PipelineDef,
    config: Config,
    *,
    max_batches: int,
    max_seconds: float,
    warmup_batches: int = 2,
    probes: bool = True,
    timeout: float | None = None,
    isolation: str = "fork",
    host: HostFacts | None = None,
    min_epochs: int = 0,
    materialize: bool = True,
    gil_check: bool | None = None,
    engine_probe: bool | None = None,
) -> Measurement:
    """Run ``defn`` under ``config`` for at most ``max_batches`` / ``max_seconds``.

    ``warmup_batches`` are consumed first and not counted (worker start-up, first fetches).
    ``min_epochs``: keep measuring past ``max_seconds`` until that many epochs (from the
    start) are complete, so a cached config shows its first epoch and its cached ones
    (``first_epoch_samples_per_second``, ``steady_samples_per_second``).
    ``materialize``: the consumer copies every batch once (see :class:`Consumer`).
    ``gil_check``: measure each stage's and the consumer's GIL share after the window
    (``StageStats.gil_share``; about 0.15-0.2 s per stage, not inside any rate). Default
    (None): on for a profile, i.e. probes on, the naive config, and an engine whose stages
    share one interpreter (``Engine.shares_gil``); trials skip it.
    ``engine_probe``: after the window, probe the engine's own hand-off with the last
    batch (``Engine.delivery_costs``: DataLoader's worker → main transfer and worker
    start-up, about 0.5 s). Default (None): on for a profile (probes on, naive config).
    ``timeout`` (default ``3 * max_seconds + 10``) bounds everything, build and warmup
    included; past it the child's whole process group is killed and the result has
    ``status="timeout"``. ``isolation="inline"`` runs in this process instead (no hard
    timeout: for debugging and for callers that already isolate).
    """
    if max_batches < 1 or max_seconds <= 0 or warmup_batches < 0 or min_epochs < 0:
        raise InvalidInputError(
            "measure needs max_batches >= 1, max_seconds > 0, warmup_batches >= 0 "
            "and min_epochs >= 0"
        )
    if isolation not in ("fork", "inline"):
        raise InvalidInputError(f"isolation must be 'fork' or 'inline', not {isolation!r}")
    host = host or host_facts(defn.source)
    limit = timeout if timeout is not None else 3 * max_seconds + 10
    naive = {**defn.naive_config, **config} == dict(defn.naive_config)
    if gil_check is None:
        gil_check = probes and engine_named(defn.engine).shares_gil and naive
    if engine_probe is None:
        engine_probe = probes and naive
    args = (
        defn,
        dict(config),
        max_batches,
        float(max_seconds),
        warmup_batches,
        probes,
        min_epochs,
        materialize,
        0.75 * limit if min_epochs else None,  # a stream never ends an epoch: stop waiting
        bool(gil_check),
        bool(engine_probe),
    )
    if isolation == "inline":
        try:
            data = _run(*args, send=lambda _msg: None)
        except Exception as exc:  # noqa: BLE001
            return _result(defn, config, host, status="error", error=_one_line(exc))
        return _result(defn, config, host, data=data)

    _preload(defn.engine)
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, args), name=f"placer-measure-{defn.name}")
    proc.start()
    send.close()
    deadline = time.monotonic() + limit
    last: tuple[Any, ...] | None = None
    outcome: tuple[Any, ...] | None = None
    try:
        while outcome is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                ready = recv.poll(min(left, 0.5))
            except (EOFError, OSError):
                break
            if ready:
                try:
                    msg = recv.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "progress":
                    last = msg
                else:
                    outcome = msg
            elif not proc.is_alive() and not recv.poll(0):
                break
    finally:
        try:
            if proc.pid is not None:
                os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.join(timeout=5)
        recv.close()
    if outcome is not None and outcome[0] == "done":
        return _result(defn, config, host, data=outcome[1])
    if outcome is not None:
        return _result(defn, config, host, status="error", error=str(outcome[1]))
    if time.monotonic() >= deadline:
        phase, done = (last[1], last[2]) if last else ("build", 0)
        stuck = _in_flight(last[3]) if last else []
        where = f"; stage(s) with elements in flight: {', '.join(stuck)}" if stuck else ""
        return _result(
            defn,
            config,
            host,
            status="timeout",
            error=f"timeout after {limit:.1f}s during {phase} ({done} batches measured){where}",
        )
    return _result(
        defn,
        config,
        host,
        status="error",
        error=f"measurement process died (exit code {proc.exitcode}) without a result",
    )


# -- host facts ------------------------------------------------------------------------


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _read_files(paths: list[str], limit_bytes: int, limit_seconds: float) -> float | None:
    """Bytes/second reading ``paths`` cold (page cache dropped per file where allowed)."""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    total = 0
    t0 = time.perf_counter()
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            while True:
                n = os.readv(fd, [view])
                if n <= 0:
                    break
                total += n
                if total >= limit_bytes:
                    break
        finally:
            os.close(fd)
        if total >= limit_bytes or time.perf_counter() - t0 > limit_seconds:
            break
    elapsed = time.perf_counter() - t0
    return total / elapsed if total and elapsed > 0 else None


def _read_url(url: str, limit_bytes: int, limit_seconds: float) -> float | None:
    total = 0
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=limit_seconds) as resp:  # noqa: S310 - user's source
        while total < limit_bytes and time.perf_counter() - t0 < limit_seconds:
            chunk = resp.read(1 << 16)
            if not chunk:
                break
            total += len(chunk)
    elapsed = time.perf_counter() - t0
    return total / elapsed if total and elapsed > 0 else None


@functools.lru_cache(maxsize=32)
def host_facts(
    source: str | os.PathLike[str] | None = None,
    *,
    limit_bytes: int = 256 << 20,
    limit_seconds: float = 2.0,
) -> HostFacts:
    """Cores this process may use, available memory, and the source's read bandwidth.

    ``source`` is a file, a directory (its files are read in name order) or an http(s)
    URL (one GET); at most ``limit_bytes`` / ``limit_seconds`` are read. Files are read
    after ``POSIX_FADV_DONTNEED`` so the number is a cold read where the kernel drops the
    cached pages (it may not for pages another process holds). Cached per source.
    """
    cores = usable_cores()
    bandwidth: float | None = None
    if source is not None:
        src = os.fspath(source)
        if src.startswith(("http://", "https://")):
            try:
                bandwidth = _read_url(src, limit_bytes, limit_seconds)
            except OSError as exc:
                raise InvalidInputError(f"cannot read source {src}: {exc}") from exc
        elif os.path.isdir(src):
            files = sorted(
                os.path.join(root, f) for root, _dirs, names in os.walk(src) for f in names
            )
            bandwidth = _read_files(files, limit_bytes, limit_seconds)
        elif os.path.isfile(src):
            bandwidth = _read_files([src], limit_bytes, limit_seconds)
        else:
            raise InvalidInputError(f"source {src} is not a file, a directory or an http(s) URL")
    return HostFacts(
        cores=cores,
        free_memory_bytes=_mem_available(),
        source_read_bytes_per_second=bandwidth,
    )
