"""How placer's cost grows with a program's allocation count (issue 17).

Runs ``examples/bin/churn`` (N allocations of 64 KiB through S sites, 64 alive) under
``placer profile --no-perf``, then ``placer objects``, ``placer recommend --dram-budget
50%`` and ``placer report`` on the stored run, each step in a fresh child process, and
records each step's wall time and peak RSS (``os.wait4``'s rusage of that child: its
largest resident set, the program's own included for ``profile``). One SQLite store per
size, so store sizes are per run. To split ``profile``'s time between the program and
placer, the program is also run under the shim alone ("under shim") and its log read by
``reduce_log`` in a fresh child ("read": placer's ingest, with its allocations/s). Prints a
table and writes ``benchmarks/results/scale-<stamp>.json``; ``docs/benchmarks.md`` records
the table.

    python benchmarks/scale.py                          # 10k, 100k, 1M, 4M; 8 sites
    python benchmarks/scale.py --sizes 10k,100k         # a quick look
    python benchmarks/scale.py --sizes 100k --wide      # the wide variant: 10,000 sites
    python benchmarks/scale.py --huge-log 50M           # read a log of 50M tiny records

With ``--deep`` the program is profiled again with ``--deep`` (the DHAT pass the emulator
needs) and ``placer emulate --all-slow`` and ``placer experiment --run --emulate`` run on
that run; the host model they price with is measured once (``placer calibrate``) into a
template store that every size's store starts from. Each step's CPU seconds (user +
system, from the same rusage) are kept beside its wall time: on a shared host the wall
time includes waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: examples/ imports

from examples.build import examples_bin  # noqa: E402

STEPS = ("profile", "objects", "recommend", "report")
#: With --deep: a second profile with the DHAT pass, then the emulator's steps on it.
DEEP_STEPS = ("profile-deep", "emulate", "experiment")
#: Reading one shim log alone (reduce_log in a fresh child): placer's own ingest cost, apart
#: from the program's run under the shim.
READ = """
import sys
from placer.collectors.profile.reduce import reduce_log
log = reduce_log(sys.argv[1])
print(log.allocations, len(log.allocs))
"""
WIDE_SITES = 10_000
#: A synthetic log of tiny records (tests.test_shim_log's layout, one copy of it).
WRITE = f"""
import sys
sys.path.insert(0, {str(REPO)!r})
from pathlib import Path
from tests.test_shim_log import write_tiny_log
write_tiny_log(Path(sys.argv[1]), int(sys.argv[2]))
"""


@dataclass
class Step:
    name: str
    seconds: float
    max_rss_mb: float
    rc: int
    note: str = ""
    cpu_seconds: float = 0.0  # user + system of the child


@dataclass
class Row:
    allocations: int
    sites: int
    alive: int
    size: int
    store_mb: float = 0.0
    native_seconds: float = 0.0
    #: the program under the shim alone (no placer), and reduce_log on its log
    shim_seconds: float = 0.0
    read: Step | None = None
    steps: list[Step] = field(default_factory=list)


def save(out_dir: Path, name: str, fields: dict[str, Any]) -> Path:
    """Write ``benchmarks/results/<name>-<stamp>.json``: date, machine and ``fields``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M')}.json"
    doc = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "uname": platform.platform()},
        **fields,
    }
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    return out


def parse_count(text: str) -> int:
    """``10k`` / ``1M`` / ``4000000`` as an allocation count (decimal multipliers)."""
    t = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def timed(cmd: list[str], env: dict[str, str], out: Path | None = None) -> Step:
    """Run ``cmd`` in a fresh child; its wall time and its own peak RSS (wait4)."""
    t0 = time.perf_counter()
    with open(out or os.devnull, "wb") as fh:
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    note = err.decode(errors="replace").strip().splitlines()[-1:] if proc.returncode else []
    cpu = usage.ru_utime + usage.ru_stime
    return Step(cmd[1], secs, usage.ru_maxrss / 1024, proc.returncode, " ".join(note), cpu)


def latest_run(placer: str, env: dict[str, str]) -> str:
    """The newest run id in the store (``latest`` if it cannot be read)."""
    got = subprocess.run(
        [placer, "runs", "--format", "json"], env=env, capture_output=True, check=False
    )
    try:
        docs = json.loads(got.stdout)
        runs = docs.get("runs", docs) if isinstance(docs, dict) else docs
        return str(max(int(r["id"]) for r in runs))
    except (ValueError, KeyError, TypeError):
        return "latest"


def huge_log(records: int, work: Path) -> dict[str, Any]:
    """Write a synthetic log of ``records`` tiny records (ALLOC+FREE pairs of 64 bytes at
    one site) and read it with ``reduce_log`` in a fresh child: its time and peak RSS."""
    path = work / "shim.huge.log"
    t0 = time.perf_counter()
    # in a child: the reader's child must not start from (and report) the writer's memory
    subprocess.run([sys.executable, "-c", WRITE, str(path), str(records // 2)], check=True)
    written = time.perf_counter() - t0
    size = path.stat().st_size
    step = timed([sys.executable, "-c", READ, str(path)], dict(os.environ))
    path.unlink()
    return {
        "records": records,
        "log_bytes": size,
        "write_seconds": written,
        "read_seconds": step.seconds,
        "read_cpu_seconds": step.cpu_seconds,
        "read_max_rss_mb": step.max_rss_mb,
        "rc": step.rc,
        "note": step.note,
    }


def template_store(work: Path) -> Path:
    """A store with this host's model in it (``placer calibrate``, once for every size)."""
    placer = str(Path(sys.executable).with_name("placer"))
    db = work / "template.db"
    env = dict(os.environ, PLACER_STORE=f"sqlite:///{db}")
    subprocess.run([placer, "db", "upgrade"], env=env, check=True, capture_output=True)
    print("measuring the host model once (placer calibrate)...", flush=True)
    subprocess.run([placer, "calibrate"], env=env, check=True, capture_output=True)
    with sqlite3.connect(db) as c:  # fold the WAL in: the copies start from one file
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return db


def run_size(
    n: int, sites: int, alive: int, size: int, work: Path, template: Path | None = None
) -> Row:
    churn = str(examples_bin("churn"))
    placer = str(Path(sys.executable).with_name("placer"))
    db = work / f"store-{n}-{sites}.db"
    if template is not None:
        shutil.copyfile(template, db)
    env = dict(os.environ, PLACER_STORE=f"sqlite:///{db}")
    args = ["-n", str(n), "-b", str(size), "-S", str(sites), "-k", str(alive)]
    row = Row(n, sites, alive, size)
    t0 = time.perf_counter()
    subprocess.run([churn, *args], check=True, stdout=subprocess.DEVNULL)
    row.native_seconds = time.perf_counter() - t0
    logdir = work / f"logs-{n}-{sites}"
    logdir.mkdir()
    shim_env = dict(
        os.environ,
        LD_PRELOAD=str(REPO / "collectors" / "shim" / "libplacer_shim.so"),
        PLACER_SHIM_LOG=str(logdir / "shim.%p.log"),
    )
    t0 = time.perf_counter()
    subprocess.run([churn, *args], check=True, stdout=subprocess.DEVNULL, env=shim_env)
    row.shim_seconds = time.perf_counter() - t0
    logs = sorted(logdir.glob("shim.*.log"))
    if logs:
        row.read = timed([sys.executable, "-c", READ, str(logs[0])], dict(os.environ))
        row.read.name = "read"
    shutil.rmtree(logdir, ignore_errors=True)
    prof = timed([placer, "profile", "--no-perf", "--format", "json", "--", churn, *args], env)
    row.steps.append(prof)
    if prof.rc != 0:
        return row
    run_id = latest_run(placer, env)
    row.steps.append(timed([placer, "objects", run_id], env))
    row.steps.append(timed([placer, "recommend", run_id, "--dram-budget", "50%"], env))
    row.steps.append(timed([placer, "report", run_id, "-o", str(work / f"r-{n}.html")], env))
    if template is not None:
        deep = timed(
            [placer, "profile", "--no-perf", "--deep", "--format", "json", "--", churn, *args],
            env,
        )
        deep.name = "profile-deep"
        row.steps.append(deep)
        if deep.rc == 0:
            deep_id = latest_run(placer, env)
            row.steps.append(timed([placer, "emulate", deep_id, "--all-slow"], env))
            row.steps.append(timed([placer, "experiment", "--run", deep_id, "--emulate"], env))
    row.store_mb = sum(
        p.stat().st_size for p in work.glob(f"store-{n}-{sites}.db*") if p.is_file()
    ) / (1 << 20)
    return row


def table(rows: list[Row]) -> str:
    steps = [*STEPS, *(DEEP_STEPS if any(len(r.steps) > len(STEPS) for r in rows) else ())]
    head = (
        "| allocations | sites | native s | under shim s | read s | read MB | read allocs/s "
        "| store MB | " + " | ".join(f"{s} s | {s} MB" for s in steps)
    )
    lines = [head + " |", "|" + "---:|" * (8 + 2 * len(steps))]
    for r in rows:
        rd = r.read
        cells = [
            f"{r.allocations:,}",
            f"{r.sites:,}",
            f"{r.native_seconds:.2f}",
            f"{r.shim_seconds:.2f}",
            f"{rd.seconds:.2f}" if rd and not rd.rc else "—",
            f"{rd.max_rss_mb:.0f}" if rd and not rd.rc else "—",
            f"{r.allocations / rd.seconds:,.0f}" if rd and not rd.rc and rd.seconds else "—",
            f"{r.store_mb:.1f}",
        ]
        by = {s.name: s for s in r.steps}
        for name in steps:
            s = by.get(name)
            if s is None:
                cells += ["—", "—"]
            elif s.rc:
                cells += [f"failed ({s.rc})", f"{s.max_rss_mb:.0f}"]
            else:
                cells += [f"{s.seconds:.2f}", f"{s.max_rss_mb:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def cpu_table(rows: list[Row]) -> str:
    """Each step's CPU seconds (user + system) beside its wall seconds."""
    names = [s.name for s in max(rows, key=lambda r: len(r.steps)).steps] if rows else []
    lines = [
        "| allocations | sites | " + " | ".join(f"{n} wall / CPU s" for n in names) + " |",
        "|" + "---:|" * (2 + len(names)),
    ]
    for r in rows:
        by = {s.name: s for s in r.steps}
        cells = [
            f"{by[n].seconds:.2f} / {by[n].cpu_seconds:.2f}" if n in by else "—" for n in names
        ]
        lines.append(f"| {r.allocations:,} | {r.sites:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10k,100k,1M,4M", help="allocation counts (10k,1M,...)")
    ap.add_argument("--sites", type=int, default=8)
    ap.add_argument("--wide", action="store_true", help=f"{WIDE_SITES:,} sites")
    ap.add_argument("--alive", type=int, default=64)
    ap.add_argument("--size", type=int, default=64 << 10, help="bytes per allocation")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the stores (printed)")
    ap.add_argument(
        "--deep", action="store_true", help="also profile --deep, emulate and experiment"
    )
    ap.add_argument(
        "--huge-log", metavar="RECORDS", help="only read a synthetic log of RECORDS tiny records"
    )
    a = ap.parse_args(argv)
    sites = WIDE_SITES if a.wide else a.sites
    work = Path(tempfile.mkdtemp(prefix="placer-scale-"))
    if a.huge_log:
        load0 = os.getloadavg()
        try:
            got = huge_log(parse_count(a.huge_log), work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        got.update(load_before=load0, load_after=os.getloadavg())
        print(
            f"read {got['records']:,} records ({got['log_bytes'] / 2**20:,.0f} MiB): "
            f"{got['read_seconds']:.1f} s wall, {got['read_cpu_seconds']:.1f} s CPU, "
            f"peak RSS {got['read_max_rss_mb']:.0f} MB, rc {got['rc']} {got['note']}"
        )
        save(a.out_dir, "scale-huge-log", got)
        return 0 if got["rc"] == 0 else 1
    rows: list[Row] = []
    load_before = os.getloadavg()
    try:
        template = template_store(work) if a.deep else None
        for n in (parse_count(x) for x in a.sizes.split(",")):
            row = run_size(n, sites, a.alive, a.size, work, template)
            rows.append(row)
            print(table([row]).splitlines()[-1], flush=True)
    finally:
        if a.keep:
            print(f"stores kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table(rows))
    print(cpu_table(rows))
    name = f"scale{'-wide' if a.wide else ''}{'-deep' if a.deep else ''}"
    rest = {"load_before": load_before, "load": os.getloadavg()}
    save(a.out_dir, name, {**rest, "rows": [asdict(r) for r in rows]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
