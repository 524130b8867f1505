"""Measure this host's model (``placer calibrate``): a pointer-chase sweep and stream bandwidth.

Runs the example microbenchmarks (``examples/micro``: chase, seqread, seqwrite) and keeps,
for every point, the best of its samples (:class:`placer.contracts.host.HostModel` says
why). Rounds repeat until every point's spread is under the limit or the rounds run out;
then the model says the host was busy, and with which spread.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from placer.contracts.host import (
    HostIdentity,
    HostModel,
    Point,
    effective_cache_bytes,
)
from placer.errors import ExternalToolError, InvalidInputError

MiB = 1 << 20
#: Pointer-chase working sets: from well inside any L2 to far beyond any LLC we know of.
MIN_CHASE = 1 * MiB
MAX_CHASE = 1024 * MiB
#: Dependent loads per chase run: ~0.1-0.3 s at DRAM latency, far more than any warm-up.
CHASE_LOADS = 1_000_000
#: Streaming working set: far beyond the cache, so the stream is DRAM's.
STREAM_BYTES = 256 * MiB
STREAM_PASSES = 6
#: Default spread limit: a point whose median is within 10% of its best is settled.
SPREAD_LIMIT = 0.10

_FIELD = re.compile(r"(\w+)=([0-9.]+)")

#: Runs one microbenchmark (name, args) and returns its result line's fields.
Runner = Callable[[str, Sequence[str]], dict[str, float]]


def parse_result(text: str) -> dict[str, float]:
    """``name: k=v ...`` result line of an example microbenchmark → {k: v} (numbers only)."""
    for line in text.splitlines():
        if ":" in line and "time_s=" in line:
            return {k: float(v) for k, v in _FIELD.findall(line.split(":", 1)[1])}
    raise ValueError("no result line")


def binary_runner(bin_dir: Path, timeout_s: float = 300.0) -> Runner:
    """A :data:`Runner` over the built example binaries in ``bin_dir``."""
    missing = [n for n in ("chase", "seqread", "seqwrite") if not (bin_dir / n).is_file()]
    if missing:
        raise ExternalToolError(
            f"microbenchmarks {', '.join(missing)} are not built in {bin_dir} "
            "(a C compiler with OpenMP is needed: `make -C examples`)"
        )

    def run(name: str, args: Sequence[str]) -> dict[str, float]:
        try:
            out = subprocess.run(
                [str(bin_dir / name), *args],
                capture_output=True,
                text=True,
                check=True,
                timeout=timeout_s,
            )
            return parse_result(out.stdout)
        except subprocess.CalledProcessError as exc:
            reason = (exc.stderr or "").strip().splitlines()
            raise ExternalToolError(
                f"{name} failed (exit {exc.returncode}): {reason[-1] if reason else 'no message'}"
            ) from None
        except subprocess.TimeoutExpired:
            raise ExternalToolError(f"{name} ran over {timeout_s:.0f} s") from None
        except ValueError:
            raise ExternalToolError(f"{name} printed no result line") from None

    return run


def chase_sizes(identity: HostIdentity, max_bytes: int = MAX_CHASE) -> list[int]:
    """Powers of two from 1 MiB to past twice the sysfs LLC (at least 256 MiB, at most 1 GiB
    and a quarter of memory): the sweep must see DRAM even where sysfs overstates the cache."""
    top = max(256 * MiB, 2 * identity.llc_sysfs_bytes)
    if identity.memory_bytes:
        top = min(top, identity.memory_bytes // 4)
    top = min(top, max_bytes)
    sizes, size = [], MIN_CHASE
    while size <= top:
        sizes.append(size)
        size *= 2
    return sizes


def thread_counts(cpus: int) -> list[int]:
    """1, 2, 4, ... up to the host's CPUs, and the CPU count itself."""
    counts, t = [], 1
    while t < cpus:
        counts.append(t)
        t *= 2
    counts.append(cpus)
    return counts


def _point(samples: Sequence[float], *, higher_is_better: bool) -> Point:
    best = max(samples) if higher_is_better else min(samples)
    return Point(best=best, median=statistics.median(samples), samples=len(samples))


def measure_host_model(
    run: Runner,
    identity: HostIdentity,
    *,
    repeats: int = 3,
    max_rounds: int = 3,
    spread_limit: float = SPREAD_LIMIT,
    sizes: Sequence[int] | None = None,
    threads: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> HostModel:
    """Measure until settled (every point's spread ≤ ``spread_limit``) or ``max_rounds``."""
    if repeats < 1 or max_rounds < 1:
        raise InvalidInputError("repeats and rounds must be at least 1")
    if not 0 < spread_limit < 1:
        raise InvalidInputError(f"spread limit must be between 0 and 1, not {spread_limit}")
    sizes = list(sizes or chase_sizes(identity))
    threads = list(threads or thread_counts(identity.cpus))
    chase: dict[int, list[float]] = {s: [] for s in sizes}
    read: dict[int, list[float]] = {t: [] for t in threads}
    write: dict[int, list[float]] = {t: [] for t in threads}
    stream = str(max(STREAM_BYTES, 4 * identity.llc_sysfs_bytes) // MiB) + "M"
    notes: list[str] = []
    rounds = 0

    def unsettled(samples: dict[int, list[float]], higher: bool) -> list[int]:
        if rounds == 0:
            return list(samples)
        return [
            k
            for k, v in samples.items()
            if _point(v, higher_is_better=higher).spread > spread_limit
        ]

    while rounds < max_rounds:
        # Round 1 measures every point; later rounds only the points not yet settled.
        todo_chase = unsettled(chase, False)
        todo_threads = sorted(set(unsettled(read, True)) | set(unsettled(write, True)))
        if rounds and not todo_chase and not todo_threads:
            break
        rounds += 1
        for _ in range(repeats):
            for size in todo_chase:
                if progress:
                    progress(f"round {rounds}: pointer chase {size // MiB} MiB")
                got = run("chase", ["-m", f"{size // MiB}M", "-i", str(CHASE_LOADS)])
                chase[size].append(got["ns_per_access"])
            for t in todo_threads:
                if progress:
                    progress(f"round {rounds}: stream read/write, {t} thread(s)")
                args = ["-m", stream, "-i", str(STREAM_PASSES), "-t", str(t)]
                read[t].append(run("seqread", args)["gb_per_s"])
                write[t].append(run("seqwrite", args)["gb_per_s"])
    chase_points = {s: _point(v, higher_is_better=False) for s, v in chase.items()}
    model = HostModel(
        identity=identity,
        chase_ns=chase_points,
        read_gbps={t: _point(v, higher_is_better=True) for t, v in read.items()},
        write_gbps={t: _point(v, higher_is_better=True) for t, v in write.items()},
        effective_cache_bytes=effective_cache_bytes({s: p.best for s, p in chase_points.items()}),
        rounds=rounds,
        spread_limit=spread_limit,
        notes=notes,
    )
    if not model.quiet:
        notes.append(
            f"host busy: spread {model.spread:.0%} after {rounds} round(s) "
            f"(limit {spread_limit:.0%}); values are the best samples"
        )
    sysfs = identity.llc_sysfs_bytes
    if sysfs and not 0.5 <= model.effective_cache_bytes / sysfs <= 2:
        notes.append(
            f"sysfs reports a {sysfs // MiB} MiB last-level cache; the pointer chase sees "
            f"{model.effective_cache_bytes / MiB:.0f} MiB (the measured size is used)"
        )
    return model
