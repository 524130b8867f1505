"""The daemon: units (tail, buffer, tuner, ranking, protocol, permissions) and end to end.

End-to-end tests start ``placer daemon`` as a subprocess on a private socket and store,
attach real processes, and stop everything they started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from placer.daemon import client
from placer.daemon.decide import ObjectTable, PipelineTuner, parse_knob_space
from placer.daemon.ingest import EventRow, StateRow, Writer
from placer.daemon.procs import may_attach, proc_info
from placer.daemon.protocol import ProtocolError, decode
from placer.daemon.tail import ShimTail
from placer.errors import InvalidInputError

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable

HOTCOLD_C = r"""
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9;
}
int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 3.0;
    int crash = argc > 2 && !strcmp(argv[2], "crash");
    size_t mb = 1 << 20;
    char *hot = malloc(16 * mb), *cold = malloc(16 * mb), *warm = malloc(8 * mb);
    memset(hot, 1, 16 * mb); memset(cold, 2, 16 * mb); memset(warm, 3, 8 * mb);
    double t0 = now();
    unsigned long it = 0;
    while (now() - t0 < secs) {
        for (size_t i = 0; i < 16 * mb; i += 4096) hot[i]++;
        if (it % 8 == 0) for (size_t i = 0; i < 8 * mb; i += 4096) warm[i]++;
        /* short-lived buffers: their ALLOC/FREE records fill the shim's 64 KiB buffer
           every second or so, so the live log reaches the daemon while the program runs */
        for (int k = 0; k < 4; k++) {
            volatile char *tmp = malloc(65536); tmp[0] = 1; free((void *)tmp);
        }
        it++;
        usleep(2000);
    }
    if (crash) abort();
    free(warm);
    return hot[4096] == 0 && cold[0] == 0;
}
"""

# A process without the shim that holds three large anonymous mappings, touched.
HOLDER_PY = """
import mmap, sys, time
flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
bufs = [mmap.mmap(-1, n << 20, flags=flags) for n in (24, 8, 4)]
for b in bufs:
    for i in range(0, len(b), 4096):
        b[i] = 1
print("ready", flush=True)
time.sleep(float(sys.argv[1]))
"""


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="session", name="hotcold")
def hotcold_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc)")
    d = tmp_path_factory.mktemp("daemonprog")
    (d / "hotcold.c").write_text(HOTCOLD_C)
    subprocess.run(["cc", "-O1", "-o", str(d / "hotcold"), str(d / "hotcold.c")], check=True)
    return d / "hotcold"


class DaemonProc:
    """``placer daemon`` in a subprocess, with its environment and helpers."""

    def __init__(self, tmp: Path, **settings: Any) -> None:
        self.tmp = tmp
        self.socket = tmp / "run" / "daemon.sock"
        self.store_path = tmp / "store.db"
        self.store_url = f"sqlite:///{self.store_path}"
        self.env = dict(os.environ)
        self.env.update(
            {
                "PLACER_DATA_DIR": str(tmp / "data"),
                "PLACER_STORE": self.store_url,
                "PLACER_DAEMON_SOCKET": str(self.socket),
                "PYTHONUNBUFFERED": "1",
                "PLACER_DAEMON_CONFIG": str(tmp / "daemon.toml"),
            }
        )
        cfg = {"interval": 0.2, "rank_every": 0.4, "metrics": "127.0.0.1:0", **settings}
        self.write_config(cfg)
        self.proc: subprocess.Popen[bytes] | None = None
        self.err_path = tmp / "daemon.err"
        self.runs = 0
        self.args: list[str] = []  # flags of `placer daemon`

    def write_config(self, cfg: dict[str, Any]) -> None:
        lines = ["[daemon]"]
        for k, v in cfg.items():
            lines.append(f"{k} = {json.dumps(v)}")
        (self.tmp / "daemon.toml").write_text("\n".join(lines) + "\n")

    def start(self) -> DaemonProc:
        self.runs += 1
        err = open(self.err_path, "ab")
        self.proc = subprocess.Popen(
            [PY, "-m", "placer", "daemon", *self.args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=self.tmp,
        )
        err.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited: {self.log_text()[-2000:]}")
            if client.running(self.socket):
                return self
            time.sleep(0.1)
        raise AssertionError("daemon did not start")

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        return client.request(op, self.socket, **fields)

    def status(self) -> dict[str, Any]:
        return self.request("status")["status"]

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PY, "-m", "placer", *args],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=60,
            check=check,
        )

    def log_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"raw": line})
        return out

    def log_text(self) -> str:
        return self.err_path.read_text() if self.err_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("daemon did not stop on SIGTERM") from None

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.store_path, timeout=30)

    def events(self, job: int, kind: str) -> list[dict[str, Any]]:
        with self.db() as c:
            rows = c.execute(
                "SELECT document FROM placer_daemon_events WHERE job_id=? AND kind=? ORDER BY seq",
                (job, kind),
            ).fetchall()
        return [json.loads(r[0]) for r in rows]

    def job_row(self, job: int) -> dict[str, Any]:
        with self.db() as c:
            status, state = c.execute(
                "SELECT status, state FROM placer_daemon_jobs WHERE id=?", (job,)
            ).fetchone()
        return {"status": status, "state": json.loads(state)}


@pytest.fixture(name="daemon_factory")
def daemon_factory_fixture(tmp_path: Path) -> Iterator[Callable[..., DaemonProc]]:
    made: list[DaemonProc] = []
    children: list[subprocess.Popen[Any]] = []

    def make(**settings: Any) -> DaemonProc:
        d = DaemonProc(tmp_path, **settings)
        d.children = children  # type: ignore[attr-defined]
        made.append(d)
        return d

    yield make
    for p in children:
        if p.poll() is None:
            p.kill()
        p.wait()
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


def wait_for(pred: Callable[[], Any], timeout: float = 20.0, step: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {pred}")
        time.sleep(step)


def start_shim_target(
    d: DaemonProc, prog: Path, *args: str
) -> tuple[subprocess.Popen[bytes], Path]:
    from placer.collectors.shim.library import shim_env

    logdir = d.tmp / "logs"
    logdir.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(shim_env(logdir / "shim.%p.log", sample_period_ms=2, buffer="64K"))
    p = subprocess.Popen([str(prog), *args], env=env)
    d.children.append(p)  # type: ignore[attr-defined]
    return p, logdir / f"shim.{p.pid}.log"


def log_counts(path: Path) -> dict[str, int]:
    from placer.collectors.shim.log import read_log

    log = read_log(path)
    return {"allocs": len(log.allocs), "frees": len(log.frees), "samples": len(log.samples)}


def window_sums(d: DaemonProc, job: int) -> dict[str, int]:
    out = {"allocs": 0, "frees": 0, "samples": 0}
    for w in d.events(job, "window"):
        for k in out:
            out[k] += int(w.get(k, 0))
    return out


# --------------------------------------------------------------------------- units
def _log_header(pid: int = 1) -> bytes:
    return b"PLSHIM01" + struct.pack("<IIQIIIIQIIQ", 1, 64, 5, pid, 4096, 6, 1, 65536, 2, 0, 77)


def test_tail_reads_only_complete_records(tmp_path: Path) -> None:
    path = tmp_path / "shim.1.log"
    alloc = struct.pack("<II", 3, 56) + struct.pack(
        "<QQQQQQ", 1, 10, 0x10000, 1 << 20, 0xAB, (0 << 32) | 7
    )
    sample = struct.pack("<II", 5, 48) + struct.pack(
        "<QQQQQ", 1, 11, 12, (4 << 32) | 3, (1 << 32) | 2
    )
    path.write_bytes(_log_header() + alloc + sample[:20])
    tail = ShimTail(path)
    first = tail.poll()
    assert [a.seq for a in first.allocs] == [1] and first.samples == []
    assert tail.header_start_time == 77
    with open(path, "ab") as fh:
        fh.write(sample[20:])
    second = tail.poll()
    assert second.allocs == [] and len(second.samples) == 1
    s = second.samples[0]
    assert (s.interval, s.sampled_pages, s.touched_pages, s.written_pages) == (3, 4, 2, 1)
    assert tail.offset == 64 + 56 + 48
    assert tail.poll().empty()


def test_tail_rejects_a_file_that_is_not_a_log(tmp_path: Path) -> None:
    from placer.daemon.tail import TailError

    path = tmp_path / "x.log"
    path.write_bytes(b"\x80\x04pickle" + b"\0" * 80)
    with pytest.raises(TailError):
        ShimTail(path).poll()
    assert ShimTail(tmp_path / "missing.log").poll().empty()


def _writer_store(tmp_path: Path) -> Any:
    from placer.store import Store
    from placer.store.models import DaemonJob

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    store.upgrade()
    with store.session() as s:
        s.add(DaemonJob(pid=1, kind="objects", command=[], state={}))
    return store


def _event(seq: int) -> EventRow:
    import datetime as dt

    return EventRow(1, "window", seq, dt.datetime.now(dt.UTC), {"samples": seq})


def test_writer_is_idempotent_and_bounded(tmp_path: Path) -> None:
    store = _writer_store(tmp_path)
    w = Writer(store, buffer_max=5, batch_max=2)
    for seq in range(1, 9):
        w.put(_event(seq))
    assert w.pending() == 5 and w.dropped == 3  # the three oldest went
    w.put(StateRow(1, {"seq": {"window": 8}}, status="attached"))
    assert w.dropped == 4  # the buffer stays bounded
    assert w.flush()
    for seq in (6, 7, 8):  # re-ingest after a "crash": nothing twice
        w.put(_event(seq))
    assert w.flush()
    con = sqlite3.connect(tmp_path / "s.db")
    seqs = [r[0] for r in con.execute("SELECT seq FROM placer_daemon_events ORDER BY seq")]
    assert seqs == [5, 6, 7, 8]
    state = json.loads(con.execute("SELECT state FROM placer_daemon_jobs").fetchone()[0])
    assert state == {"seq": {"window": 8}}
    con.close()
    store.dispose()


def test_writer_keeps_rows_while_sqlite_is_locked(tmp_path: Path) -> None:
    from sqlalchemy import event

    store = _writer_store(tmp_path)

    @event.listens_for(store.engine, "connect")
    def _short(dbapi: Any, _rec: Any) -> None:
        dbapi.execute("PRAGMA busy_timeout = 100")

    store.engine.dispose()
    w = Writer(store, buffer_max=100, batch_max=10)
    lock = sqlite3.connect(tmp_path / "s.db", timeout=5, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    for seq in range(1, 4):
        w.put(_event(seq))
    assert w.flush() is False
    assert w.pending() == 3 and w.failures == 1 and w.last_error
    lock.execute("COMMIT")
    lock.close()
    assert w.flush() is True and w.pending() == 0 and w.written == 3
    store.dispose()


def test_pipeline_tuner_asks_tells_and_settles() -> None:
    space = parse_knob_space(
        {"num_workers": {"low": 1, "high": 4}, "cache": {"choices": [None, "decode"]}}
    )
    tuner = PipelineTuner(space, {"num_workers": 1, "cache": None}, trials=4, seed=1)
    knobs: dict[str, Any] = {"num_workers": 1, "cache": None}
    seen = []
    for _ in range(4):
        rate = 10.0 * knobs["num_workers"] + (5 if knobs["cache"] else 0)
        nxt, rec = tuner.step(knobs, rate)
        assert not rec.get("waiting")
        seen.append((dict(knobs), rate))
        knobs = nxt
    assert tuner.settled()
    assert seen[0][0] == {"num_workers": 1, "cache": None}  # trial 0: what the job runs
    best = max(seen, key=lambda x: x[1])
    assert knobs == best[0]
    # optuna-dashboard names the objective and shows the knobs the daemon settled on
    assert tuner.study.metric_names == ["samples/s"]
    assert tuner.study.user_attrs["placer_best"]["config"] == best[0]
    assert tuner.study.user_attrs["placer_best"]["samples_per_second"] == best[1]
    # a report with knobs the job has not applied yet is not told as that trial
    t2 = PipelineTuner(space, {"num_workers": 2, "cache": None}, trials=3)
    first, _ = t2.step({"num_workers": 2, "cache": None}, 20.0)
    _, rec = t2.step(
        {"num_workers": 2, "cache": None}
        if first != {"num_workers": 2, "cache": None}
        else {"num_workers": 3, "cache": "x"},
        5.0,
    )
    assert rec.get("waiting") and t2.told == 1


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"w": {"low": 3, "high": 1}},
        {"w": {"choices": []}},
        {"w": {"low": "1", "high": 2}},
        {"w": 5},
    ],
)
def test_knob_space_is_checked(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        parse_knob_space(bad)


def test_ranking_puts_the_hot_object_in_dram() -> None:
    from placer.placement.model import PlacementModel
    from placer.placement.registry import default_files

    files = default_files()
    assert files is not None
    model = PlacementModel.from_texts(files["ranker"], files["penalty"], files["meta"])
    t = ObjectTable()
    mb = 1 << 20
    for seq, size in ((1, 16 * mb), (2, 16 * mb), (3, 8 * mb)):
        t.add_alloc(seq, 0x1000000 * seq, size, 0x100 + seq, 1_000_000 * seq)
    for interval in range(40):
        t.sample(1, interval, 4, 4, 4)  # hot
        t.sample(2, interval, 4, 0, 0)  # cold
        t.sample(3, interval, 4, 1 if interval % 4 == 0 else 0, 0)
    decisions = t.rank(model, "50%", "default", 10**9)
    tiers = {d.obj.key: d.tier for d in decisions}
    assert tiers["s1"] == "dram" and tiers["s2"] == "slow"
    assert all("predicted penalty" in d.reason for d in decisions)
    assert t.rank(model, "50%", "default", 2 * 10**9) == []  # no change, no decision
    t.free(1)
    assert "s1" not in t.objects and t.freed == 1


def test_protocol_parses_json_only() -> None:
    import pickle

    with pytest.raises(ProtocolError):
        decode(pickle.dumps({"op": "ping"}))
    with pytest.raises(ProtocolError):
        decode(b"[1, 2]")
    assert decode(b'{"op": "ping"}') == {"op": "ping"}


def test_attach_rule_refuses_other_users() -> None:
    me = proc_info(os.getpid())
    assert me is not None
    other = 65534 if me.uids[0] != 65534 else 65533
    assert may_attach(0, me) is None
    assert may_attach(me.uids[0], me) is None
    assert "may only attach to its own" in (may_attach(other, me) or "")
    # a daemon that is not root cannot act on another user's process, whoever asks
    assert may_attach(0, me, daemon_uid=other) is not None


# --------------------------------------------------------------------------- CLI errors
def test_cli_without_daemon(tmp_path: Path) -> None:
    d = DaemonProc(tmp_path)
    r = d.cli("attach", str(os.getpid()))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no daemon socket" in r.stderr
    r = d.cli("daemon", "status", "--format", "json")
    assert r.returncode == 3 and json.loads(r.stdout)["running"] is False
    r = d.cli("attach", "0")
    assert r.returncode == 2 and "invalid pid" in r.stderr
    (tmp_path / "daemon.toml").write_text("[daemon]\ninterval = -1\n")
    r = d.cli("daemon")
    assert r.returncode == 2 and "interval" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "daemon.toml").write_text("[daemon]\nnot_a_setting = 1\n")
    r = d.cli("daemon")
    assert r.returncode == 2 and "unknown setting" in r.stderr
    assert not d.socket.exists()


# --------------------------------------------------------------------------- in-process
def test_daemon_refuses_another_users_process(tmp_path: Path) -> None:
    """The permission rule applied by the running service to the requester's uid."""
    from placer.daemon.config import DaemonConfig
    from placer.daemon.procs import PermissionRefused
    from placer.daemon.service import Daemon, json_log

    cfg = DaemonConfig(socket=str(tmp_path / "d.sock"), metrics="")
    log = open(tmp_path / "log", "w")
    d = Daemon(cfg, f"sqlite:///{tmp_path / 's.db'}", None, json_log("info", log))
    d.start()
    try:
        me = os.getuid()
        stranger = 65534 if me != 65534 else 65533
        with pytest.raises(PermissionRefused, match="refused"):
            d.requests.op_attach({"pid": os.getpid()}, stranger, 1)
        assert d.jobs == {}
        got = d.requests.op_attach({"pid": os.getpid()}, me, 1)["job"]
        with pytest.raises(PermissionRefused):  # nor may a stranger detach it
            d.requests.op_detach({"job": got["id"]}, stranger, 1)
        with pytest.raises(ProtocolError):
            d.requests.op_attach({"pid": "1; rm -rf /"}, me, 1)
        mode = stat.S_IMODE(os.stat(cfg.socket_path()).st_mode)
        assert mode == 0o600 and os.stat(cfg.socket_path()).st_uid == me
    finally:
        d.stop()
        log.close()
    assert not cfg.socket_path().exists()


# --------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_attach_decide_migrate_detach(daemon_factory: Callable[..., DaemonProc]) -> None:
    d = daemon_factory().start()
    mode = stat.S_IMODE(os.stat(d.socket).st_mode)
    assert mode == 0o600
    holder = subprocess.Popen([PY, "-c", HOLDER_PY, "60"], stdout=subprocess.PIPE)
    d.children.append(holder)  # type: ignore[attr-defined]
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"ready"
    r = d.cli("attach", str(holder.pid), "--format", "json", check=True)
    job = json.loads(r.stdout)["job"]["id"]
    again = json.loads(d.cli("attach", str(holder.pid), "--format", "json").stdout)
    assert again["existing"] and again["job"]["id"] == job

    migrations = wait_for(
        lambda: len(d.events(job, "migration")) >= 3 and d.events(job, "migration")
    )
    for m in migrations:
        # node 0 is this host's only node: every present page is there after the call
        # (EFAULT: a page never written, still the kernel's shared zero page)
        assert set(m["errors"]) <= {"EFAULT"} and m["node"] == 0
        assert m["after_on_node"] + m["not_present"] + sum(m["errors"].values()) == m["pages"]
        assert m["numa_maps_after"].get("0", 0) > 0
    # the 36 MiB the holder wrote are all on node 0, as move_pages and numa_maps say
    assert sum(m["after_on_node"] for m in migrations) >= (36 << 20) // 4096
    doc = json.loads(d.cli("job", str(job), "--format", "json", check=True).stdout)["job"]
    assert doc["source"] == "daemon" and doc["kind"] == "objects"
    assert sum(o["size_bytes"] for o in doc["current"]) >= 36 << 20
    assert doc["recent_decisions"] and all("budget" in x["reason"] for x in doc["recent_decisions"])
    # its migrations: when, object, pages asked/moved/failed, errno summary, numa_maps
    assert doc["migrations_total"] >= 3 and len(doc["migrations"]) >= 3
    m0 = doc["migrations"][0]
    assert {"at", "object", "pages", "moved", "failed", "errors"} <= set(m0)
    assert m0["failed"] == sum(m0["errors"].values()) and m0["numa_maps_after"].get("0", 0) > 0
    d.env["COLUMNS"] = "200"  # a wide terminal: no cell folded
    text = d.cli("job", str(job), check=True).stdout
    del d.env["COLUMNS"]
    m1 = doc["migrations"][-1]
    assert "migrations, newest" in text and f"{m1['moved']}/{m1['pages']}" in text
    assert f">0:{m1['numa_maps_after']['0']}" in text  # numa_maps before>after, node:pages
    # floats are rounded in the table (4 significant digits)
    pen = [o["predicted_penalty"] for o in doc["current"] if o["predicted_penalty"]]
    assert pen and f"{pen[0]:.3g}" in text and f" {pen[0]} " not in text
    jobs = json.loads(d.cli("jobs", "--format", "json", check=True).stdout)
    assert jobs["source"] == "daemon" and [j["id"] for j in jobs["jobs"]] == [job]

    status = d.status()
    host, port = status["metrics"].rsplit(":", 1)
    assert host == "127.0.0.1"
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    moved = [ln for ln in text.splitlines() if ln.startswith("placer_daemon_migrations_total")]
    assert moved and float(moved[0].split()[-1]) >= 3
    assert 'placer_daemon_jobs{kind="objects"} 1.0' in text

    out = json.loads(d.cli("detach", str(job), "--format", "json", check=True).stdout)
    assert out["job"]["status"] == "detached"
    assert holder.poll() is None  # detaching never touches the process
    wait_for(lambda: d.job_row(job)["status"] == "detached")
    assert d.stop() == 0
    assert not d.socket.exists()
    assert any(e.get("event") == "stopped" for e in d.log_lines())
    # the fleet report reads the daemon's state document as it is
    from placer.reports.fleet import FleetReport
    from placer.store import Store

    with Store(d.store_url) as store:
        fleet = FleetReport(store).collect()
    row = fleet["jobs"]["rows"][0]
    assert row["migrations"] == len(d.events(job, "migration")) and row["decisions"] >= 3
    assert row["recent_decisions"][0]["reason"]


@pytest.mark.slow
def test_profiled_program_registers_and_closes(
    daemon_factory: Callable[..., DaemonProc], hotcold: Path
) -> None:
    d = daemon_factory().start()
    # no sampling cost cap: on a busy host the 1% budget leaves too few samples to rank on
    r = d.cli("profile", "--sample-period", "2", "--sample-budget", "0", "--", str(hotcold), "2.5")
    assert r.returncode == 0, r.stderr
    assert "daemon job 1 watches" in r.stderr
    row = wait_for(lambda: d.job_row(1)["status"] != "attached" and d.job_row(1))
    assert row["status"] == "exited"
    st = row["state"]
    assert st["wrapper_pid"] != st["pid"]  # the daemon found the program under the wrapper
    assert st["samples_ingested"] > 0 and st["decisions_total"] >= 3
    assert st["rankings"] >= 1 and 0 <= st["rank_seconds"] < 60  # what one re-ranking took
    decided = {x["object"]: x["tier"] for x in d.events(1, "decision")}
    assert decided.get("s1") == "dram"  # the hot array
    # the job is linked to the run placer profile stored for the program
    with d.db() as c:
        (run_id,) = c.execute("SELECT run_id FROM placer_daemon_jobs WHERE id=1").fetchone()
        (newest,) = c.execute("SELECT max(id) FROM placer_runs").fetchone()
    assert run_id is not None and run_id == newest
    hist = json.loads(d.cli("job", "1", "--history", "--format", "json", check=True).stdout)
    assert hist["job"]["run_id"] == run_id and hist["job"]["migrations"]
    assert d.stop() == 0


@pytest.mark.slow
def test_target_crash_closes_job_without_error_storm(
    daemon_factory: Callable[..., DaemonProc], hotcold: Path
) -> None:
    d = daemon_factory().start()
    target, log = start_shim_target(d, hotcold, "2", "crash")
    job = d.request("attach", pid=target.pid)["job"]["id"]
    assert target.wait(timeout=30) == -signal.SIGABRT
    row = wait_for(lambda: d.job_row(job)["status"] != "attached" and d.job_row(job))
    assert row["status"] == "crashed" and row["state"]["signal"] == "SIGABRT"
    time.sleep(1.0)  # several more ticks with the job gone
    # data kept: every record of the log was ingested exactly once
    assert window_sums(d, job) == log_counts(log)
    assert d.events(job, "decision")
    warnings = [e for e in d.log_lines() if e.get("level") in ("warning", "error")]
    assert len(warnings) <= 2, warnings
    assert d.request("jobs")["jobs"] == []
    assert d.stop() == 0


def _stage(name: str, wall: float, cpu: float, par: int = 1, out: int = 40) -> dict[str, Any]:
    return {
        "name": name,
        "elements_in": out,
        "elements_out": out,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "bytes_out": out * 1000,
        "wait_seconds": 0.0,
        "queue_occupancy": 0.0,
        "parallelism": par,
    }


def test_first_trial_is_the_analysis_when_stats_suffice() -> None:
    from placer.daemon.decide import analyze_reported

    space = parse_knob_space(
        {"parallelism.fetch": {"low": 1, "high": 16}, "prefetch": {"low": 0, "high": 16}}
    )
    knobs = {"parallelism.fetch": 1, "prefetch": 0}
    # fetch waits 50 ms per batch on I/O (little CPU): parallel fetches hide it
    stages = [_stage("fetch", 2.0, 0.02), _stage("decode", 0.1, 0.1), _stage("batch", 0.01, 0.01)]
    first = analyze_reported(space, knobs, stages, 40, 20.0)
    assert first.source == "analysis", first.reason
    assert first.knobs["parallelism.fetch"] > 1 and first.knobs["prefetch"] >= 1
    assert "bottleneck fetch" in first.reason
    # stats without the analysis's fields: the job's own config, and why
    thin = analyze_reported(space, knobs, [{"name": "fetch", "elements_out": 40}], 40, 20.0)
    assert thin.source == "current" and thin.knobs == knobs
    assert "lacks elements_in" in thin.reason
    none = analyze_reported(space, knobs, [], 40, 20.0)
    assert none.source == "current" and "no stage stats" in none.reason


def test_study_lives_in_the_store_and_resumes(tmp_path: Path) -> None:
    from placer.daemon.decide import analyze_reported
    from placer.store import Store
    from placer.tuners.tuning import optuna_storage

    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store(url) as store:
        store.ensure_schema()
    space = parse_knob_space({"parallelism.fetch": {"low": 1, "high": 16}})
    start = {"parallelism.fetch": 1}
    stages = [_stage("fetch", 2.0, 0.02)]
    first = analyze_reported(space, start, stages, 40, 20.0)
    assert first.source == "analysis"
    t = PipelineTuner(
        space,
        start,
        trials=4,
        seed=3,
        storage=optuna_storage(url, heartbeat=False),
        study_name="daemon-job7-x",
        first=first,
    )
    assert not t.resumed
    # the first report measured the job's own config: a baseline trial; next: the analysis
    nxt, rec = t.step(start, 20.0)
    assert rec["origin"] == "baseline" and nxt == first.knobs and t.told == 1
    assert t.trial is not None and t.trial[0] == 0  # trial 0 is the analysis's answer
    nxt2, rec2 = t.step(nxt, 300.0)
    assert rec2["trial"] == 0 and rec2["origin"] == "analysis" and t.told == 2
    # a restarted daemon loads the study: told trials, best and the open trial carry over
    t2 = PipelineTuner(
        space,
        nxt2,
        trials=4,
        seed=3,
        storage=optuna_storage(url, heartbeat=False),
        study_name="daemon-job7-x",
        first=None,
    )
    assert t2.resumed and t2.told == 2 and t2.best == (300.0, first.knobs)
    assert t2.trial is not None and t2.trial[1] == nxt2 and t2.first.source == "analysis"
    _, rec3 = t2.step(nxt2, 100.0)
    assert rec3["trial"] == t.trial[0] and t2.told == 3
    # Optuna's own tables sit next to placer's in the store's database
    with sqlite3.connect(tmp_path / "store.db") as c:
        names = {r[0] for r in c.execute("SELECT study_name FROM studies")}
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert names == {"daemon-job7-x"} and "placer_daemon_jobs" in tables
