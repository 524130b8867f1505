"""Read a host's NUMA nodes from sysfs and class each as DRAM or a slow tier.

Sources (kernel documentation): ``/sys/devices/system/node/nodeN/{cpulist,meminfo,distance}``,
HMAT attributes under ``nodeN/access0/initiators/`` (``read_latency`` in ns,
``read_bandwidth`` in MB/s) and memory tiers under ``/sys/devices/virtual/memory_tiering``.
``root`` lets tests point at a recorded tree.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NODE_DIR = Path("sys/devices/system/node")
TIERING_DIR = Path("sys/devices/virtual/memory_tiering")


@dataclass
class NumaNode:
    """One NUMA node and the evidence for its tier class."""

    node: int
    cpus: list[int]
    capacity_bytes: int
    free_bytes: int
    distances: list[int]
    hmat: dict[str, int] = field(default_factory=dict)
    memory_tier: int | None = None
    kind: str = "dram"
    evidence: list[str] = field(default_factory=list)

    @property
    def has_cpus(self) -> bool:
        return bool(self.cpus)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["has_cpus"] = self.has_cpus
        return data


def parse_cpulist(text: str) -> list[int]:
    """``0-3,8,10-11`` → [0, 1, 2, 3, 8, 10, 11]."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _meminfo(text: str) -> dict[str, int]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        m = re.match(r"Node\s+\d+\s+(\w+):\s+(\d+)\s*(kB)?", line)
        if m:
            values[m.group(1)] = int(m.group(2)) * (1024 if m.group(3) else 1)
    return values


def _memory_tiers(root: Path) -> dict[int, int]:
    """node → memory tier id, from ``memory_tiering/memory_tierN/nodelist``."""
    tiers: dict[int, int] = {}
    base = root / TIERING_DIR
    if not base.is_dir():
        return tiers
    for tier_dir in sorted(base.glob("memory_tier*")):
        m = re.fullmatch(r"memory_tier(\d+)", tier_dir.name)
        text = _read(tier_dir / "nodelist")
        if m and text is not None:
            for node in parse_cpulist(text):
                tiers[node] = int(m.group(1))
    return tiers


def detect_nodes(root: Path | str = "/") -> list[NumaNode]:
    """All online memory nodes under ``root``, classed DRAM or slow with evidence."""
    root = Path(root)
    base = root / NODE_DIR
    nodes: list[NumaNode] = []
    for node_dir in sorted(base.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
        idx = int(node_dir.name[4:])
        info = _meminfo(_read(node_dir / "meminfo") or "")
        distance_text = _read(node_dir / "distance") or ""
        hmat: dict[str, int] = {}
        access = node_dir / "access0" / "initiators"
        for attr in ("read_latency", "write_latency", "read_bandwidth", "write_bandwidth"):
            value = _read(access / attr)
            if value is not None and value.strip().isdigit():
                hmat[attr] = int(value)
        nodes.append(
            NumaNode(
                node=idx,
                cpus=parse_cpulist(_read(node_dir / "cpulist") or ""),
                capacity_bytes=info.get("MemTotal", 0),
                free_bytes=info.get("MemFree", 0),
                distances=[int(x) for x in distance_text.split()],
                hmat=hmat,
            )
        )
    _classify(nodes, _memory_tiers(root))
    return nodes


def _classify(nodes: list[NumaNode], tiers: dict[int, int]) -> None:
    """DRAM = nodes with CPUs and CPU-less nodes that look like them; the rest are slow.

    Evidence, strongest first: the kernel's memory tier (a higher abstract distance tier
    than the CPU nodes' is slower), HMAT read latency against the CPU nodes', then the
    SLIT distance from the nearest CPU node (local is 10; remote DRAM is typically 20-21,
    Optane KMEM-DAX and CXL are often higher but firmware varies, so this is weakest).
    """
    cpu_nodes = [n for n in nodes if n.has_cpus]
    dram_tiers = {tiers[n.node] for n in cpu_nodes if n.node in tiers}
    dram_latency = min(
        (n.hmat["read_latency"] for n in cpu_nodes if "read_latency" in n.hmat), default=None
    )
    for n in nodes:
        n.memory_tier = tiers.get(n.node)
        if n.has_cpus:
            n.kind = "dram"
            n.evidence.append(f"has CPUs {n.cpus[0]}-{n.cpus[-1]}")
            continue
        n.evidence.append("no CPUs (memory-only node)")
        if n.memory_tier is not None and dram_tiers:
            slower = n.memory_tier > max(dram_tiers)
            n.evidence.append(
                f"memory_tier{n.memory_tier} vs CPU nodes' memory_tier{max(dram_tiers)}"
            )
            n.kind = "slow" if slower else "dram"
            continue
        if "read_latency" in n.hmat and dram_latency:
            ratio = n.hmat["read_latency"] / dram_latency
            n.evidence.append(f"HMAT read latency {n.hmat['read_latency']} ns = {ratio:.1f}x DRAM")
            n.kind = "slow" if ratio >= 1.3 else "dram"
            continue
        near = min(
            (n.distances[c.node] for c in cpu_nodes if c.node < len(n.distances)), default=None
        )
        if near is not None:
            n.evidence.append(f"SLIT distance {near} from nearest CPU node")
            n.kind = "slow" if near > 21 else "dram"
        else:
            n.evidence.append("no distance information")
            n.kind = "slow"
