"""Small plain-Python pipelines that do real work, for testing the tuner without any engine.

They exist so that the analysis and the tuner can be tested and benchmarked on this host
even where torch/tf are absent: every stage really reads a file, really decompresses and
hashes (zlib and hashlib release the GIL, so thread parallelism really scales on cores) or
really sleeps for a simulated remote request. :func:`measure_synthetic` runs one with its
own probes, the same shape of result as ``placer.collectors.pipeline.measure.measure``.

- ``synthetic-cpu``: read (sequential, file) → decode (CPU) → flip (random) → batch
- ``synthetic-remote``: fetch (I/O latency per request, parallel) → decode → batch
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import queue
import random
import resource
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from placer.collectors.pipeline.measure import consume
from placer.collectors.pipeline.probe import Probes
from placer.contracts.pipeline import (
    ChoiceKnob,
    Config,
    HostFacts,
    IntKnob,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
)

RECORD_BYTES = 16 * 1024


def _timed(probe: Any, fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item) if probe is None else probe.call(fn, item)


# --------------------------------------------------------------------------- runtime


class _Pipeline:
    """A chain of ordered thread-pool maps with optional cache and output prefetch."""

    def __init__(
        self,
        n: int,
        stages: list[tuple[str, Callable[[Any], Any], int]],
        batch_size: int,
        prefetch: int,
        cache_after: str | None,
        probes: Any,
    ) -> None:
        self.n = n
        self.stages = stages
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.cache_after = cache_after
        self.probes = probes
        self.pools = [cf.ThreadPoolExecutor(max(p, 1)) for _, _, p in stages]
        self._stop = threading.Event()
        self._cache: list[Any] | None = None

    def _map(self, idx: int, items: Iterator[Any]) -> Iterator[Any]:
        name, fn, par = self.stages[idx]
        counter = self.probes.stage(name) if self.probes else None
        pending: list[cf.Future[Any]] = []
        pool = self.pools[idx]
        for item in items:
            pending.append(pool.submit(_timed, counter, fn, item))
            if len(pending) >= 2 * par:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()

    def _epoch(self) -> Iterator[Any]:
        names = [s[0] for s in self.stages]
        start = 0
        items: Iterator[Any]
        if self._cache is not None and self.cache_after in names:
            start = names.index(self.cache_after) + 1
            items = iter(self._cache)
        else:
            items = iter(range(self.n))
        fill: list[Any] | None = None
        for idx in range(start, len(self.stages)):
            items = self._map(idx, items)
            if self._cache is None and self.stages[idx][0] == self.cache_after:
                fill = []
                items = _tee(items, fill)
        yield from items
        if fill is not None and len(fill) == self.n:
            self._cache = fill

    def _batches(self) -> Iterator[list[Any]]:
        counter = self.probes.stage("batch") if self.probes else None
        buf: list[Any] = []  # one epoch per iter(); a short last batch is dropped
        for item in self._epoch():
            buf.append(item)
            if len(buf) == self.batch_size:
                if counter is not None:
                    counter.record(n_in=len(buf), n_out=1)
                yield buf
                buf = []
            if self._stop.is_set():
                return

    def __iter__(self) -> Iterator[list[Any]]:
        if self.prefetch <= 0:
            yield from self._batches()
            return
        q: queue.Queue[Any] = queue.Queue(self.prefetch)
        done = object()

        def fill() -> None:
            try:
                for b in self._batches():
                    while not self._stop.is_set():
                        try:
                            q.put(b, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
            except (cf.CancelledError, RuntimeError):
                if not self._stop.is_set():
                    raise
            finally:
                q.put(done)

        threading.Thread(target=fill, daemon=True).start()
        while True:
            b = q.get()
            if b is done:
                return
            yield b

    def close(self) -> None:
        self._stop.set()
        for pool in self.pools:
            pool.shutdown(wait=False, cancel_futures=True)


def _tee(items: Iterator[Any], sink: list[Any]) -> Iterator[Any]:
    for item in items:
        sink.append(item)
        yield item


# --------------------------------------------------------------------------- pipelines


def _dataset(n: int) -> Path:
    """A file of ``n`` compressed records, made once per process in the temp dir."""
    path = Path(tempfile.gettempdir()) / f"placer-synthetic-{n}-{os.getuid()}.bin"
    if path.exists() and path.stat().st_size > 0:
        return path
    rng = random.Random(42)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        for _ in range(n):
            raw = bytes(rng.getrandbits(8) for _ in range(256)) * (RECORD_BYTES // 256)
            rec = zlib.compress(raw, 1)
            fh.write(len(rec).to_bytes(4, "little") + rec.ljust(RECORD_BYTES - 4, b"\0"))
    tmp.replace(path)
    return path


def _reader(path: Path) -> Callable[[int], bytes]:
    fd = os.open(path, os.O_RDONLY)

    def read(i: int) -> bytes:
        block = os.pread(fd, RECORD_BYTES, i * RECORD_BYTES)
        size = int.from_bytes(block[:4], "little")
        return block[4 : 4 + size]

    return read


def _decode(rounds: int) -> Callable[[bytes], bytes]:
    """Decompress, then derive a key from the record for ``rounds`` PBKDF2 iterations.

    Both zlib and PBKDF2 run without the GIL, so decode threads really use several cores.
    """

    def decode(rec: bytes) -> bytes:
        raw = zlib.decompress(rec)
        hashlib.pbkdf2_hmac("sha256", raw[:64], b"placer", rounds)
        return raw

    return decode


def _flip(data: bytes) -> bytes:
    return data[::-1] if random.random() < 0.5 else data


def synthetic_cpu(n: int = 512, batch_size: int = 16, rounds: int = 1500) -> PipelineDef:
    """read (sequential file reads) → decode (CPU, parallel) → flip (random) → batch."""
    path = _dataset(n)
    stages = [
        StageInfo("read", kind="source", sequential=True),
        StageInfo("decode", kind="map", parallelism_knob="parallelism.decode"),
        StageInfo("flip", kind="map", random=True),
        StageInfo("batch", kind="batch", sequential=True),
    ]

    def build(config: Config, probes: Any) -> Iterable[Any]:
        return _Pipeline(
            n,
            [
                ("read", _reader(path), 1),
                ("decode", _decode(rounds), int(config.get("parallelism.decode", 1))),
                ("flip", _flip, 1),
            ],
            batch_size,
            int(config.get("prefetch", 0)),
            config.get("cache"),
            probes,
        )

    return PipelineDef(
        name="synthetic-cpu",
        engine="python",
        stages=stages,
        knobs={
            "parallelism.decode": IntKnob(1, 6),
            "prefetch": IntKnob(1, 8),
            "cache": ChoiceKnob((None, "read", "decode")),
        },
        build=build,
        batch_size=batch_size,
        naive_config={"parallelism.decode": 1, "prefetch": 0, "cache": None},
        dataset_samples=n,
        description="file reads, zlib+hash decode (releases the GIL), random flip, batch",
    )


def synthetic_remote(n: int = 256, batch_size: int = 8, latency_ms: float = 8.0) -> PipelineDef:
    """fetch (one simulated remote request per record, parallel) → decode → batch."""
    path = _dataset(n)
    read = _reader(path)

    def fetch(i: int) -> bytes:
        time.sleep(latency_ms / 1000.0)
        return read(i)

    stages = [
        StageInfo("fetch", kind="source", parallelism_knob="parallelism.fetch"),
        StageInfo("decode", kind="map", parallelism_knob="parallelism.decode"),
        StageInfo("batch", kind="batch", sequential=True),
    ]

    def build(config: Config, probes: Any) -> Iterable[Any]:
        return _Pipeline(
            n,
            [
                ("fetch", fetch, int(config.get("parallelism.fetch", 1))),
                ("decode", _decode(100), int(config.get("parallelism.decode", 1))),
            ],
            batch_size,
            int(config.get("prefetch", 0)),
            None,
            probes,
        )

    return PipelineDef(
        name="synthetic-remote",
        engine="python",
        stages=stages,
        knobs={
            "parallelism.fetch": IntKnob(1, 32, log=True),
            "parallelism.decode": IntKnob(1, 4),
            "prefetch": IntKnob(1, 8),
        },
        build=build,
        batch_size=batch_size,
        naive_config={"parallelism.fetch": 1, "parallelism.decode": 1, "prefetch": 0},
        dataset_samples=n,
        description=f"simulated remote fetch ({latency_ms:g} ms per request), decode, batch",
    )


SYNTHETIC = {"synthetic-cpu": synthetic_cpu, "synthetic-remote": synthetic_remote}


# --------------------------------------------------------------------------- measuring


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def host_facts() -> HostFacts:
    free = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
    except OSError:
        pass
    return HostFacts(cores=os.cpu_count() or 1, free_memory_bytes=free)


def measure_synthetic(
    defn: PipelineDef,
    config: Config,
    *,
    max_batches: int = 10_000,
    max_seconds: float = 2.0,
    probes: bool = True,
    timeout: float | None = None,
    min_epochs: int = 0,
    materialize: bool = True,
) -> Measurement:
    """Run ``defn`` under ``config`` in this process; a hung pipeline returns an error.

    The run happens in a daemon thread joined with a deadline (``timeout``, default
    ``2 × max_seconds + 5``), so a stage that never returns cannot hang the caller. The
    loop is the collectors' consumer (epochs, ``min_epochs``, materializing each batch).
    """
    sink = Probes([s.name for s in defn.stages]) if probes else None
    result: dict[str, Any] = {}
    _reset_peak_rss()

    def run() -> None:
        pipe: Any = None
        try:
            pipe = defn.build(config, sink)
            data = consume(
                pipe,
                batch_size=defn.batch_size,
                max_batches=max_batches,
                max_seconds=max_seconds,
                min_epochs=min_epochs,
                materialize=materialize,
            )
            result.update(data, wall=data["wall_seconds"])
        except Exception as exc:  # noqa: BLE001 - reported as the measurement's error
            result["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            if pipe is not None and hasattr(pipe, "close"):
                pipe.close()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout if timeout is not None else 2 * max_seconds + 5)
    host = host_facts()
    if worker.is_alive():
        return Measurement(config, 0.0, 0, 0, 0.0, [], host, error="timeout: pipeline hung")
    if "error" in result:
        return Measurement(config, 0.0, 0, 0, 0.0, [], host, error=result["error"])
    stats: list[StageStats] = []
    if sink is not None:
        par = {
            s.name: int(config.get(s.parallelism_knob, 1)) if s.parallelism_knob else 1
            for s in defn.stages
        }
        stats = sink.stats(parallelism=par)
    wall = max(result["wall"], 1e-9)
    return Measurement(
        config=dict(config),
        samples_per_second=result["samples"] / wall,
        batches=result["batches"],
        samples=result["samples"],
        wall_seconds=wall,
        stages=stats,
        host=host,
        peak_rss_bytes=_peak_rss(),
        consumer_wait_seconds=float(result["consumer_wait_seconds"]),
        consumer_seconds=float(result["consumer_seconds"]),
        bytes_consumed=int(result["bytes_consumed"]),
        first_epoch_samples_per_second=result["first_epoch_samples_per_second"],
        steady_samples_per_second=result["steady_samples_per_second"],
        epochs_completed=int(result["epochs_completed"]),
        first_batch_seconds=result["first_batch_seconds"],
        consumer_best_seconds_per_batch=result["consumer_best_seconds_per_batch"],
    )
