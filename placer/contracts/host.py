"""The host model: this host's memory as programs see it, measured once and kept.

Labels, ``emulate``, ``recommend`` and the reports price placements against a stored
:class:`HostModel`, never against numbers measured around the run being priced: a number
taken on a shared host changes with the load, and a label that changes when you compute it
again is not a result. sysfs cache sizes are evidence, not truth (a VM reports the physical
host's L3), so the cache size here is the *effective* one, read off a pointer-chase sweep.

Measured by :mod:`placer.collectors.hostmodel` (``placer calibrate``), stored per host by
:mod:`placer.store.repository`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: Bumped when the measuring method changes, so an old model is not mistaken for a new one.
METHOD_VERSION = 1


@dataclass(frozen=True)
class HostIdentity:
    """What makes two hosts the same for pricing: a model measured on one prices only it."""

    hostname: str
    cpu_model: str
    cpus: int
    memory_bytes: int
    llc_sysfs_bytes: int

    def fingerprint(self) -> str:
        """A short stable hash of the identity (hostname included: a VM's twin is another host)."""
        doc = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Point:
    """One measured point: the best value over its samples, and how far the median strayed."""

    best: float
    median: float
    samples: int

    @property
    def spread(self) -> float:
        """Relative distance of the median from the best (0: every sample agreed)."""
        if self.best <= 0:
            return 0.0
        return abs(self.median - self.best) / self.best


@dataclass(frozen=True)
class HostModel:
    """A host's caches and DRAM, each point the best of several samples (see module doc).

    Best-of, not median: interference from other processes only ever makes a load slower
    or a stream narrower, so the best sample is the stable estimate of the hardware, and
    the median's distance from it (``spread``) says how busy the host was.
    """

    identity: HostIdentity
    #: pointer-chase latency (ns per dependent load) by working-set bytes
    chase_ns: dict[int, Point]
    #: streaming read / write bandwidth (GB/s) by OpenMP thread count
    read_gbps: dict[int, Point]
    write_gbps: dict[int, Point]
    effective_cache_bytes: int
    rounds: int
    spread_limit: float
    method_version: int = METHOD_VERSION
    notes: list[str] = field(default_factory=list)

    # -- derived ------------------------------------------------------------------------
    @property
    def dram_latency_ns(self) -> float:
        """Latency at the largest working set measured (far beyond any cache)."""
        return self.chase_ns[max(self.chase_ns)].best

    @property
    def read_bandwidth_gbps(self) -> float:
        """Best streaming read over thread counts: what the whole host can pull."""
        return max(p.best for p in self.read_gbps.values())

    @property
    def write_bandwidth_gbps(self) -> float:
        return max(p.best for p in self.write_gbps.values())

    @property
    def spread(self) -> float:
        """The largest spread of any point: how busy the host was while measured."""
        points = [*self.chase_ns.values(), *self.read_gbps.values(), *self.write_gbps.values()]
        return max((p.spread for p in points), default=0.0)

    @property
    def quiet(self) -> bool:
        return self.spread <= self.spread_limit

    def fingerprint(self) -> str:
        """Identity of the model's numbers: a plan or label priced on it carries this."""
        doc = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    # -- JSON ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def points(d: dict[int, Point]) -> dict[str, Any]:
            return {str(k): asdict(v) for k, v in sorted(d.items())}

        return {
            "identity": asdict(self.identity),
            "chase_ns": points(self.chase_ns),
            "read_gbps": points(self.read_gbps),
            "write_gbps": points(self.write_gbps),
            "effective_cache_bytes": self.effective_cache_bytes,
            "rounds": self.rounds,
            "spread_limit": self.spread_limit,
            "method_version": self.method_version,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HostModel:
        def points(d: dict[str, Any]) -> dict[int, Point]:
            return {
                int(k): Point(float(v["best"]), float(v["median"]), int(v["samples"]))
                for k, v in d.items()
            }

        ident = doc["identity"]
        return cls(
            identity=HostIdentity(
                hostname=str(ident["hostname"]),
                cpu_model=str(ident["cpu_model"]),
                cpus=int(ident["cpus"]),
                memory_bytes=int(ident["memory_bytes"]),
                llc_sysfs_bytes=int(ident["llc_sysfs_bytes"]),
            ),
            chase_ns=points(doc["chase_ns"]),
            read_gbps=points(doc["read_gbps"]),
            write_gbps=points(doc["write_gbps"]),
            effective_cache_bytes=int(doc["effective_cache_bytes"]),
            rounds=int(doc["rounds"]),
            spread_limit=float(doc["spread_limit"]),
            method_version=int(doc.get("method_version", METHOD_VERSION)),
            notes=[str(n) for n in doc.get("notes", [])],
        )


def effective_cache_bytes(chase_ns: dict[int, float]) -> int:
    """The working set at which pointer-chase latency is halfway from cache to DRAM.

    Interpolated in log2(size) between the two measured sizes around the crossing. The
    smallest size's latency stands for the cache, the largest's for DRAM; a curve that
    never crosses (all sizes in cache, or none) answers the size at the matching end.
    """
    sizes = sorted(chase_ns)
    if len(sizes) < 2:
        raise ValueError("a pointer-chase sweep needs at least two sizes")
    low, high = chase_ns[sizes[0]], chase_ns[sizes[-1]]
    if high <= low:
        return sizes[-1]
    mid = (low + high) / 2
    for a, b in zip(sizes, sizes[1:], strict=False):
        la, lb = chase_ns[a], chase_ns[b]
        if la < mid <= lb:
            frac = (mid - la) / (lb - la)
            x = math.log2(a) + frac * (math.log2(b) - math.log2(a))
            return int(round(2**x))
    return sizes[0]


def sysfs_llc_bytes(root: str = "/") -> int:
    """The largest cache of cpu0 that sysfs reports (0 when it reports none)."""
    base = Path(root) / "sys/devices/system/cpu/cpu0/cache"
    best = 0
    for idx in base.glob("index[0-9]*"):
        try:
            text = (idx / "size").read_text().strip()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            mult = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]
            best = max(best, int(m.group(1)) * mult)
    return best


def _cpu_model(root: str = "/") -> str:
    try:
        for line in (Path(root) / "proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def this_host(root: str = "/") -> HostIdentity:
    """This machine's identity (see :class:`HostIdentity`)."""
    return HostIdentity(
        hostname=platform.node() or "localhost",
        cpu_model=_cpu_model(root),
        cpus=os.cpu_count() or 1,
        memory_bytes=_memory_bytes(),
        llc_sysfs_bytes=sysfs_llc_bytes(root),
    )


def host_stamp(
    identity: HostIdentity, model_id: int | None, model_fingerprint: str
) -> dict[str, Any]:
    """What a plan records of the host and host model it was computed on (``plan["host"]``).

    A plan's node numbers and its priced slowdown hold on that host only: another host has
    other nodes, another cache and another DRAM, so the plan is checked against this stamp
    before it is applied or priced (:func:`check_stamp`).
    """
    return {
        "hostname": identity.hostname,
        "fingerprint": identity.fingerprint(),
        "host_model": model_id,
        "host_model_fingerprint": model_fingerprint,
    }


def stamp_mismatch(stamp: Any, identity: HostIdentity, what: str) -> str | None:
    """Why ``what`` (stamped with ``stamp``) does not belong to host ``identity``; None if it does.

    An unstamped document (written by hand, or by a placer before plans were stamped) is
    accepted: there is nothing to compare with.
    """
    if not isinstance(stamp, dict) or not stamp.get("fingerprint"):
        return None
    if stamp["fingerprint"] == identity.fingerprint():
        return None
    model = stamp.get("host_model")
    on = f"host model {model} of " if model is not None else ""
    return (
        f"{what} was computed on {on}{stamp.get('hostname') or 'another host'}, not on this "
        f"host ({identity.hostname}): compute it here with `placer recommend`"
    )
