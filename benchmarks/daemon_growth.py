"""The daemon over a long job (issue 17, point 4): memory, store and re-ranking over time.

Starts ``placer daemon`` on a fresh SQLite store, then runs ``examples/bin/churn -n N -t
SECONDS`` (N allocations of 64 KiB through S sites, 64 alive, paced evenly over SECONDS:
an hour-long job's allocations in less time) under ``placer profile --no-perf``, which
registers the program with the daemon. Every ``--every`` seconds it records the daemon's
resident set (``VmRSS``, and its peak ``VmHWM``) and CPU time from ``/proc``, the store's
size (database + WAL), the daemon's events in the store, and from the job's state document
the records ingested, re-rankings done and the last re-ranking's duration. Prints a table
over time and writes ``benchmarks/results/daemon-growth-<stamp>.json``; docs/benchmarks.md
records it.

    python benchmarks/daemon_growth.py                       # 4M allocations over 300 s
    python benchmarks/daemon_growth.py -n 400k --seconds 60  # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: examples/ and benchmarks/ imports

from benchmarks.scale import parse_count, save  # noqa: E402
from examples.build import examples_bin  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in kB of ``pid`` (empty once it is gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def store_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*") if p.is_file())


def store_facts(db: Path) -> dict[str, Any]:
    """The daemon's events by kind and the newest objects job's state (read-only)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as c:
            events = dict(
                c.execute("SELECT kind, count(*) FROM placer_daemon_events GROUP BY kind")
            )
            row = c.execute(
                "SELECT id, state FROM placer_daemon_jobs WHERE kind='objects' "
                "ORDER BY id DESC LIMIT 1"
            ).fetchone()
    except sqlite3.Error:
        return {}
    state = json.loads(row[1]) if row and row[1] else {}
    return {"events": events, "job": row[0] if row else None, "state": state}


def wait_for(what: str, check: Any, limit: float) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"daemon_growth: timed out waiting for {what}")
        time.sleep(0.25)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| t s | program allocs (logged) | daemon RSS MB | daemon peak MB | daemon CPU % "
        "| store MB | events | re-rankings | last re-rank ms | live objects |"
    )
    lines = [head, "|" + "---:|" * 10]
    for r in rows:
        lines.append(
            f"| {r['t']:.0f} | {r['records'] // 2:,} | {r['rss_kb'] / 1024:.0f} "
            f"| {r['hwm_kb'] / 1024:.0f} | {r['cpu_pct']:.0f} | {r['store_bytes'] / 2**20:.2f} "
            f"| {r['events']:,} | {r['rankings']:,} | "
            + (f"{1000 * r['rank_s']:.1f}" if r["rank_s"] is not None else "—")
            + f" | {r['live']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", "--allocations", default="4M")
    ap.add_argument("--seconds", type=float, default=300.0, help="pace the job over this long")
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--alive", type=int, default=64)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between table rows")
    ap.add_argument("--rank-every", type=float, default=1.0, help="daemon's rank_every")
    ap.add_argument("--interval", type=float, default=0.5, help="daemon's loop interval")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    a = ap.parse_args(argv)
    n = parse_count(a.allocations)
    placer = str(Path(sys.executable).with_name("placer"))
    churn = str(examples_bin("churn"))
    work = Path(tempfile.mkdtemp(prefix="placer-daemon-growth-"))
    db = work / "placer.db"
    (work / "daemon.toml").write_text(
        f'[daemon]\nmetrics = ""\nrank_every = {a.rank_every}\nperf = false\n'
    )
    env = dict(
        os.environ,
        PLACER_STORE=f"sqlite:///{db}",
        PLACER_DATA_DIR=str(work / "data"),
        PLACER_DAEMON_CONFIG=str(work / "daemon.toml"),
        PLACER_DAEMON_SOCKET=str(work / "daemon.sock"),
    )
    load_before = os.getloadavg()
    subprocess.run([placer, "db", "upgrade"], env=env, check=True, capture_output=True)
    daemon_log = open(work / "daemon.log", "wb")  # noqa: SIM115 - closed in finally
    daemon = subprocess.Popen(
        [placer, "daemon", "--interval", str(a.interval)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=daemon_log,
        start_new_session=True,
    )
    job: subprocess.Popen[bytes] | None = None
    rows: list[dict[str, Any]] = []
    try:
        wait_for(
            "the daemon to answer",
            lambda: (
                subprocess.run(
                    [placer, "daemon", "status"], env=env, capture_output=True
                ).returncode
                == 0
            ),
            60,
        )
        args = ["-n", str(n), "-S", str(a.sites), "-k", str(a.alive), "-t", str(a.seconds)]
        job_out = open(work / "job.out", "wb")  # noqa: SIM115 - closed with the job
        t0 = time.monotonic()
        job = subprocess.Popen(
            [placer, "profile", "--no-perf", "--", churn, *args],
            env=env,
            stdout=job_out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cpu0, tcpu = cpu_seconds(daemon.pid), t0
        next_at = t0 + a.every
        while True:
            done = job.poll() is not None
            now = time.monotonic()
            if now >= next_at or done:
                cpu = cpu_seconds(daemon.pid)
                st = proc_status(daemon.pid)
                facts = store_facts(db)
                state = facts.get("state", {})
                rows.append(
                    {
                        "t": now - t0,
                        "rss_kb": st.get("VmRSS", 0),
                        "hwm_kb": st.get("VmHWM", 0),
                        "cpu_pct": 100 * (cpu - cpu0) / max(now - tcpu, 1e-9),
                        "store_bytes": store_bytes(db),
                        "events": sum(facts.get("events", {}).values()),
                        "events_by_kind": facts.get("events", {}),
                        "records": int(state.get("records_ingested", 0)),
                        "rankings": int(state.get("rankings", 0)),
                        "rank_s": state.get("rank_seconds"),
                        "live": len(state.get("tiers") or {}),
                        "decisions": int(state.get("decisions_total", 0)),
                    }
                )
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                cpu0, tcpu = cpu, now
                next_at += a.every
            if done:
                break
            time.sleep(0.2)
        job_seconds = time.monotonic() - t0
    finally:
        if job is not None and job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        daemon_log.close()
    print(table(rows))
    out_text = (work / "job.out").read_text(errors="replace").strip().splitlines()
    doc = {
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "allocations": n,
        "paced_seconds": a.seconds,
        "job_seconds": job_seconds,
        "job_rc": job.returncode if job is not None else None,
        "job_output_tail": out_text[-5:],
        "sites": a.sites,
        "alive": a.alive,
        "rank_every": a.rank_every,
        "interval": a.interval,
        "rows": rows,
    }
    print(
        f"job: rc {doc['job_rc']}, {job_seconds:.0f} s; load {load_before} -> {doc['load_after']}"
    )
    save(a.out_dir, "daemon-growth", doc)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if doc["job_rc"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
