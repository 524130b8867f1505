"""`placer doctor` on what the kernel may move under placer's feet: NUMA balancing, memory
tiering / demotion, DAMON (issue 14, finding 3), on recorded procfs/sysfs trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from placer.doctor import check_damon, check_demotion, check_numa_balancing, run_doctor
from tests.sysfs_trees import write_tree


def _file(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


@pytest.mark.parametrize(
    ("value", "status", "words"),
    [
        ("0", "ok", "does not move"),
        ("1", "warn", "hinting faults"),
        ("2", "warn", "memory tiering"),
        ("3", "warn", "NUMA balancing + memory tiering"),
    ],
)
def test_numa_balancing_values(tmp_path: Path, value: str, status: str, words: str) -> None:
    _file(tmp_path, "proc/sys/kernel/numa_balancing", value)
    f = check_numa_balancing(str(tmp_path), nodes=2)
    assert f.status == status and words in f.detail
    assert f.data["value"] == int(value)
    assert f.data["tiering"] == (value in ("2", "3"))
    if value != "0":
        assert "sysctl kernel.numa_balancing=0" in f.detail


def test_numa_balancing_on_one_node_or_absent(tmp_path: Path) -> None:
    assert check_numa_balancing(str(tmp_path)).status == "unsupported"
    _file(tmp_path, "proc/sys/kernel/numa_balancing", "1")
    one = check_numa_balancing(str(tmp_path), nodes=1)
    assert one.status == "ok" and "one node" in one.detail


@pytest.mark.parametrize(
    ("text", "status"), [("true", "warn"), ("false", "ok"), (None, "unsupported")]
)
def test_demotion(tmp_path: Path, text: str | None, status: str) -> None:
    if text is not None:
        _file(tmp_path, "sys/kernel/mm/numa/demotion_enabled", text)
    f = check_demotion(str(tmp_path))
    assert f.status == status
    assert f.data["enabled"] == (None if text is None else text == "true")


def _kdamond(root: Path, n: int, state: str, actions: list[str]) -> None:
    base = f"sys/kernel/mm/damon/admin/kdamonds/{n}"
    _file(root, f"{base}/state", state)
    for i, action in enumerate(actions):
        _file(root, f"{base}/contexts/0/schemes/{i}/action", action)


def test_damon_states(tmp_path: Path) -> None:
    assert check_damon(str(tmp_path / "none")).status == "unsupported"
    idle = tmp_path / "idle"
    _kdamond(idle, 0, "off", ["pageout"])
    f = check_damon(str(idle))
    assert f.status == "ok" and "no kdamond running" in f.detail and f.data["admin"]
    watch = tmp_path / "watch"
    _kdamond(watch, 0, "on", ["stat"])
    f = check_damon(str(watch))
    assert f.status == "ok" and "monitoring only" in f.detail
    moving = tmp_path / "moving"
    _kdamond(moving, 0, "on", ["migrate_cold", "stat"])
    f = check_damon(str(moving))
    assert f.status == "warn" and "migrate_cold" in f.detail and f.data["running"] == ["kdamond 0"]
    other = tmp_path / "proc-only"
    _file(other, "proc/812/comm", "kdamond.0")
    f = check_damon(str(other))
    assert f.status == "warn" and "pid 812" in f.detail
    reclaim = tmp_path / "reclaim"
    _file(reclaim, "sys/module/damon_reclaim/parameters/enabled", "Y")
    assert check_damon(str(reclaim)).status == "warn"


def test_doctor_summary_reads_the_recorded_tree(tmp_path: Path) -> None:
    nodes = [
        {"node": 0, "cpulist": "0-1", "gib": 16, "free_gib": 8, "distance": [10, 20]},
        {"node": 1, "cpulist": "", "gib": 64, "free_gib": 60, "distance": [20, 10]},
    ]
    write_tree(tmp_path, nodes)
    _file(tmp_path, "proc/sys/kernel/numa_balancing", "2")
    _file(tmp_path, "sys/kernel/mm/numa/demotion_enabled", "true")
    _kdamond(tmp_path, 0, "on", ["migrate_hot"])
    doc = run_doctor(f"sqlite:///{tmp_path / 'none.db'}", sys_root=str(tmp_path))
    s = doc["summary"]
    assert (s["numa_balancing"], s["memory_demotion"], s["damon_running"]) == (2, True, True)
    names = [f["name"] for f in doc["findings"]]
    assert names[:4] == ["memory tiers", "NUMA balancing", "memory demotion", "DAMON"]
    assert all(f["status"] == "warn" for f in doc["findings"][1:4])
