"""Tier detection on recorded sysfs trees and live on this host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from placer.tiers import detect_nodes
from placer.tiers.sysfs import parse_cpulist
from tests.sysfs_trees import cxl_expander, optane_kmem_dax, two_socket_dram


def test_cpulist_parsing() -> None:
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("\n") == []


def test_two_socket_dram_host_has_no_slow_tier(tmp_path: Path) -> None:
    nodes = detect_nodes(two_socket_dram(tmp_path))
    assert [n.kind for n in nodes] == ["dram", "dram"]
    assert nodes[1].cpus[0] == 16
    assert nodes[0].capacity_bytes == 192 * 1024**3
    assert nodes[0].distances == [10, 21]


def test_optane_kmem_dax_nodes_are_slow_by_memory_tier(tmp_path: Path) -> None:
    nodes = detect_nodes(optane_kmem_dax(tmp_path))
    assert [n.kind for n in nodes] == ["dram", "dram", "slow", "slow"]
    assert not nodes[2].has_cpus
    assert any("memory_tier22" in e for e in nodes[2].evidence)


def test_cxl_node_is_slow_by_hmat_even_when_slit_looks_like_dram(tmp_path: Path) -> None:
    nodes = detect_nodes(cxl_expander(tmp_path))
    assert [n.kind for n in nodes] == ["dram", "slow"]
    assert nodes[1].hmat["read_latency"] == 260
    assert any("HMAT" in e for e in nodes[1].evidence)


@pytest.mark.parametrize(
    "tree, slow", [(two_socket_dram, 0), (optane_kmem_dax, 2), (cxl_expander, 1)]
)
def test_tiers_command_on_recorded_trees(run_placer, tmp_path: Path, tree, slow: int) -> None:  # type: ignore[no-untyped-def]
    root = tree(tmp_path / "root")
    out = run_placer("tiers", "--sys-root", str(root), "--format", "json", check=True)
    doc = json.loads(out.stdout)
    assert doc["slow_nodes"] == slow
    assert all(n["evidence"] for n in doc["nodes"])


def test_tiers_live_on_this_host(run_placer) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(run_placer("tiers", "--format", "json", check=True).stdout)
    assert doc["dram_nodes"] >= 1
    assert doc["nodes"][0]["has_cpus"] is True
    table = run_placer("tiers", check=True).stdout
    assert "node0" in table


def test_tiers_on_a_root_without_sysfs_is_a_clear_error(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = run_placer("tiers", "--sys-root", str(tmp_path))
    assert out.returncode == 2
    assert "no NUMA information" in out.stderr
