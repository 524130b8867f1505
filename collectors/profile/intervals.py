"""Map (time, address) samples to the object — and chunk — that held the address then.

Addresses are reused: the same range belongs to different allocations over a run, so a
sample belongs to the object whose address range holds its address *and* whose lifetime
``[alloc_ns, free_ns)`` holds its time. :class:`ObjectIndex` answers a batch of samples
with one sweep over time, keeping the live objects in a sorted array of start addresses
(bisect), so a batch of S samples over N objects costs O((N + S) log N), not O(N·S).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

NEVER = 2**63 - 1


@dataclass(frozen=True)
class Span:
    """One object's address range and lifetime (``free_ns`` None: alive at exit)."""

    start: int
    size: int
    alloc_ns: int
    free_ns: int | None


@dataclass(frozen=True)
class Hit:
    """Where one sample landed: object position in the index's input, and chunk."""

    obj: int
    chunk: int


class ObjectIndex:
    """Interval index over object spans; ``chunk_size`` splits large ones (0: no chunks)."""

    def __init__(self, spans: Sequence[Span], chunk_size: int = 0) -> None:
        if chunk_size < 0:
            raise ValueError("chunk_size must be >= 0")
        self.spans = list(spans)
        self.chunk_size = chunk_size
        # events sorted by time; frees before allocs at equal times (half-open lifetimes)
        events: list[tuple[int, int, int]] = []
        for i, s in enumerate(self.spans):
            events.append((s.alloc_ns, 1, i))
            events.append((s.free_ns if s.free_ns is not None else NEVER, 0, i))
        events.sort()
        self._events = events

    def chunk_count(self, size: int) -> int:
        if self.chunk_size <= 0 or size <= self.chunk_size:
            return 1
        return -(-size // self.chunk_size)

    def lookup(self, times: Sequence[int], addrs: Sequence[int]) -> list[Hit | None]:
        """For each (time, address) the object and chunk that held it, or None."""
        if len(times) != len(addrs):
            raise ValueError("times and addrs differ in length")
        order = sorted(range(len(times)), key=times.__getitem__)
        out: list[Hit | None] = [None] * len(times)
        starts: list[int] = []  # live objects, sorted by start address
        owner: list[int] = []  # object index per entry of starts
        events = self._events
        ev = 0
        n_ev = len(events)
        for q in order:
            t = times[q]
            while ev < n_ev and events[ev][0] <= t:
                _, is_alloc, i = events[ev]
                ev += 1
                start = self.spans[i].start
                pos = bisect.bisect_left(starts, start)
                if is_alloc:
                    if pos < len(starts) and starts[pos] == start:
                        owner[pos] = i  # a missed free: the newer allocation wins
                    else:
                        starts.insert(pos, start)
                        owner.insert(pos, i)
                elif pos < len(starts) and starts[pos] == start and owner[pos] == i:
                    del starts[pos]
                    del owner[pos]
            a = addrs[q]
            pos = bisect.bisect_right(starts, a) - 1
            if pos < 0:
                continue
            i = owner[pos]
            span = self.spans[i]
            off = a - span.start
            if off >= span.size:
                continue
            chunk = off // self.chunk_size if self.chunk_count(span.size) > 1 else 0
            out[q] = Hit(i, int(chunk))
        return out
