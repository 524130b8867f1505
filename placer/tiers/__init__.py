"""Memory tiers: what NUMA nodes a host has and which of them are slow."""

from placer.tiers.sysfs import NumaNode, detect_nodes

__all__ = ["NumaNode", "detect_nodes"]
