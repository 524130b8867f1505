"""`placer plan export`: a plan bound by a program placer does not start (issue 14, finding 3)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from placer.act.export import numactl
from placer.collectors.shim.log import find_logs, read_log
from placer.contracts.host import this_host
from placer.placement.planfile import parse_shim_lines, shim_lines
from placer.store import Store
from placer.store.models import Run

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``placer ARGS`` in this process."""
    from placer.cli import main

    monkeypatch.setenv("PLACER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("PLACER_STORE", raising=False)

    def run(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"placer {' '.join(args)} exited {code}: {err}")
        return subprocess.CompletedProcess(list(args), code, out, err)

    return run


def _plan(**extra: object) -> dict:
    return {
        "format": "placer-plan",
        "version": 1,
        "build_id": "ab" * 20,
        "app": "demo",
        "budget": {"bytes": 50, "fraction": 0.5, "footprint_bytes": 100},
        "nodes": {"dram": 0, "slow": 1, "default_tier": "dram"},
        "decisions": [
            {"site": "0123456789abcdef", "chunk": 0, "tier": "dram", "node": 0, "size_bytes": 50},
            {"site": "fedcba9876543210", "chunk": 0, "tier": "slow", "node": 1, "size_bytes": 50},
        ],
        **extra,
    }


def _env_file(text: str) -> dict[str, str]:
    """The variables of an env export (comments skipped), as systemd/docker read them."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_export_env_systemd_json_name_the_shim_and_the_plan(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "p.json"
    plan.write_text(json.dumps(_plan()))
    env = _env_file(cli("plan", "export", str(plan), check=True).stdout)
    assert set(env) == {
        "LD_PRELOAD",
        "PLACER_SHIM_LOG",
        "PLACER_SHIM_PLAN",
        "PLACER_SHIM_SAMPLE_PERIOD_MS",
    }
    so = Path(env["LD_PRELOAD"])
    assert so.is_absolute() and so.is_file() and so.name.endswith(".so")
    shim_plan = Path(env["PLACER_SHIM_PLAN"])
    assert shim_plan == plan.with_suffix(".shim") and shim_plan.is_absolute()
    assert shim_plan.read_text().splitlines() == shim_lines(_plan())
    assert env["PLACER_SHIM_LOG"] == str(tmp_path / "p.shim.%p.log")

    unit = cli("plan", "export", str(plan), "--format", "systemd", check=True).stdout
    assert "[Service]" in unit.splitlines()
    # systemd expands %p in Environment=: the shim's own %p must be written %%p
    assert f'Environment="PLACER_SHIM_LOG={tmp_path}/p.shim.%%p.log"' in unit
    assert f'Environment="LD_PRELOAD={so}"' in unit

    doc = json.loads(cli("plan", "export", str(plan), "--format", "json", check=True).stdout)
    assert doc["env"] == env and doc["bindings"] == 2 and doc["plan"] == str(plan)


def test_export_numactl_is_the_closest_whole_process_policy() -> None:
    half = numactl(_plan())
    assert "numactl --interleave=0,1 -- CMD" in half
    comment = half.splitlines()[0]
    assert comment.startswith("# ") and "loses" in comment
    all_dram = _plan(decisions=[_plan()["decisions"][0]])
    assert "numactl --preferred=0 --" in numactl(all_dram)
    small = _plan(budget={"bytes": 10, "fraction": 0.1, "footprint_bytes": 100})
    assert "numactl --preferred=1 --" in numactl(small)
    large = _plan(budget={"bytes": 90, "fraction": 0.9, "footprint_bytes": 100})
    assert "numactl --preferred=0 --" in numactl(large)


def test_export_refuses_a_plan_from_another_host_unless_forced(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    plan = tmp_path / "other.json"
    plan.write_text(json.dumps(_plan(host={"hostname": "elsewhere", "fingerprint": "0" * 16})))
    r = cli("plan", "export", str(plan))
    assert r.returncode == 2 and "elsewhere" in r.stderr and "--force" in r.stderr
    assert r.stderr.count("\n") == 1 and not plan.with_suffix(".shim").exists()
    r = cli("plan", "export", str(plan), "--force")
    assert r.returncode == 0 and "LD_PRELOAD=" in r.stdout
    here = tmp_path / "here.json"
    me = this_host()
    here.write_text(
        json.dumps(_plan(host={"hostname": me.hostname, "fingerprint": me.fingerprint()}))
    )
    assert cli("plan", "export", str(here), "--format", "numactl").returncode == 0


@pytest.mark.slow
def test_exported_env_binds_as_run_plan_does(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Run an example with only the env file's variables (env -i): the shim binds the same
    sites to node 0 as `placer run --plan` does."""
    if subprocess.run(["make", "-s", "-C", str(REPO / "examples")]).returncode != 0:
        pytest.skip("cannot build the examples")
    url = f"sqlite:///{tmp_path / 'export.db'}"
    prog = [str(REPO / "examples" / "bin" / "seqread"), "-m", "32M", "-i", "20"]
    cli("--store", url, "profile", "--name", "seqread", "--no-perf", "--", *prog, check=True)
    store = Store(url)
    with store.session() as s:
        rid = s.scalar(select(func.max(Run.id)).where(Run.kind == "profile"))
    store.dispose()
    plan = tmp_path / "seq.json"
    cli(
        "--store",
        url,
        "recommend",
        str(rid),
        "--dram-budget",
        "100%",
        "-o",
        str(plan),
        "--dram-node",
        "0",
        "--slow-node",
        "0",
        check=True,
    )
    out = cli("--store", url, "run", "--plan", str(plan), "--format", "json", "--", *prog)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout[out.stdout.index("{\n") :])
    by_run = {k for k, v in doc["achieved"]["sites"].items() if v["binds_ok"] > 0}
    assert by_run

    env_path = tmp_path / "seq.env"
    cli("--store", url, "plan", "export", str(plan), "-o", str(env_path), check=True)
    env = _env_file(env_path.read_text())
    got = subprocess.run(["env", "-i", *(f"{k}={v}" for k, v in env.items()), *prog])
    assert got.returncode == 0
    lines = Path(env["PLACER_SHIM_PLAN"]).read_text().splitlines()
    site_of, planned, _ = parse_shim_lines(lines)
    logs = [read_log(p) for p in find_logs(env["PLACER_SHIM_LOG"])]
    assert logs, "the shim wrote no log"
    bound: set[str] = set()
    for log in logs:
        alloc_site = {a.seq: a.site_hash for a in log.allocs}
        for b in log.binds:
            key = site_of.get(alloc_site.get(b.seq, -1))
            assert key is not None and b.errno == 0 and b.node == planned[key] == 0
            bound.add(key)
    assert bound == by_run
