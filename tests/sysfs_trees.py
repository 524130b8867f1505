"""Recorded sysfs trees of tiered hosts, written from the kernel's documented layout.

Files follow Documentation/ABI/stable/sysfs-devices-node (cpulist, meminfo, distance,
accessN/initiators/{read,write}_{latency,bandwidth}) and
Documentation/ABI/testing/sysfs-kernel-mm-memory-tiers (memory_tierN/nodelist).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

GIB_KB = 1024 * 1024


def _meminfo(node: int, total_gib: int, free_gib: int) -> str:
    return (
        f"Node {node} MemTotal:       {total_gib * GIB_KB} kB\n"
        f"Node {node} MemFree:        {free_gib * GIB_KB} kB\n"
        f"Node {node} MemUsed:        {(total_gib - free_gib) * GIB_KB} kB\n"
        f"Node {node} HugePages_Total:     0\n"
    )


def write_tree(
    root: Path, nodes: list[dict[str, Any]], tiers: dict[int, str] | None = None
) -> Path:
    base = root / "sys/devices/system/node"
    base.mkdir(parents=True)
    (base / "online").write_text(f"0-{len(nodes) - 1}\n")
    for spec in nodes:
        d = base / f"node{spec['node']}"
        d.mkdir()
        (d / "cpulist").write_text(spec.get("cpulist", "") + "\n")
        (d / "meminfo").write_text(_meminfo(spec["node"], spec["gib"], spec["free_gib"]))
        (d / "distance").write_text(" ".join(map(str, spec["distance"])) + "\n")
        if "hmat" in spec:
            acc = d / "access0" / "initiators"
            acc.mkdir(parents=True)
            for key, value in spec["hmat"].items():
                (acc / key).write_text(f"{value}\n")
    if tiers:
        tdir = root / "sys/devices/virtual/memory_tiering"
        tdir.mkdir(parents=True)
        for tier, nodelist in tiers.items():
            (tdir / f"memory_tier{tier}").mkdir()
            (tdir / f"memory_tier{tier}" / "nodelist").write_text(nodelist + "\n")
    return root


def two_socket_dram(root: Path) -> Path:
    return write_tree(
        root,
        [
            {"node": 0, "cpulist": "0-15,32-47", "gib": 192, "free_gib": 180, "distance": [10, 21]},
            {
                "node": 1,
                "cpulist": "16-31,48-63",
                "gib": 192,
                "free_gib": 181,
                "distance": [21, 10],
            },
        ],
        tiers={4: "0-1"},
    )


def optane_kmem_dax(root: Path) -> Path:
    """Two sockets with DRAM plus one Optane PMEM node each, onlined with KMEM DAX."""
    return write_tree(
        root,
        [
            {"node": 0, "cpulist": "0-23", "gib": 96, "free_gib": 90, "distance": [10, 21, 17, 28]},
            {
                "node": 1,
                "cpulist": "24-47",
                "gib": 96,
                "free_gib": 91,
                "distance": [21, 10, 28, 17],
            },
            {"node": 2, "gib": 756, "free_gib": 750, "distance": [17, 28, 10, 28]},
            {"node": 3, "gib": 756, "free_gib": 752, "distance": [28, 17, 28, 10]},
        ],
        tiers={4: "0-1", 22: "2-3"},
    )


def cxl_expander(root: Path) -> Path:
    """One socket plus a CXL Type-3 expander; SLIT alone looks like remote DRAM, HMAT does not."""
    return write_tree(
        root,
        [
            {
                "node": 0,
                "cpulist": "0-31",
                "gib": 256,
                "free_gib": 240,
                "distance": [10, 20],
                "hmat": {
                    "read_latency": 95,
                    "write_latency": 95,
                    "read_bandwidth": 180000,
                    "write_bandwidth": 180000,
                },
            },
            {
                "node": 1,
                "gib": 128,
                "free_gib": 128,
                "distance": [20, 10],
                "hmat": {
                    "read_latency": 260,
                    "write_latency": 260,
                    "read_bandwidth": 30000,
                    "write_bandwidth": 30000,
                },
            },
        ],
    )
