"""``placer profile`` end to end on real programs with the real shim, perf and valgrind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

PROG = r"""
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static double *make_hot(size_t n) { return malloc(n * sizeof(double)); }   /* line 8 */
static double *make_cold(size_t n) { return calloc(n, sizeof(double)); }   /* line 9 */

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "ok";
    size_t hot_n = 64 * 1024, cold_n = 4 * 1024 * 1024;
    double *hot = make_hot(hot_n);
    double *cold = make_cold(cold_n);
    memset(hot, 0, hot_n * sizeof(double));
    for (size_t i = 0; i < cold_n; i += 512) cold[i] = 1.0;     /* touch once */
    double s = 0;
    for (int r = 0; r < 400; r++)
        for (size_t i = 0; i < hot_n; i++) { hot[i] += r; s += hot[i]; }
    printf("sum %.0f\n", s);
    fflush(stdout);
    if (!strcmp(mode, "crash")) { volatile int *p = 0; *p = 1; }
    if (!strcmp(mode, "kill")) { sleep(2); raise(SIGKILL); }
    if (!strcmp(mode, "wait")) { puts("ready"); fflush(stdout); for (;;) pause(); }
    free(cold);
    free(hot);
    return !strcmp(mode, "exit3") ? 3 : 0;
}
"""


def _shim_ready() -> str | None:
    try:
        from placer.collectors.shim.library import shim_path  # type: ignore[attr-defined,unused-ignore]

        return str(shim_path())
    except Exception as exc:  # noqa: BLE001
        return f"!{exc}"


@pytest.fixture(scope="module")
def shim() -> str:
    got = _shim_ready()
    if got is None or got.startswith("!"):
        pytest.skip(f"the allocation shim is not available: {got}")
    return got


@pytest.fixture(scope="module")
def prog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("prog")
    (d / "prog.c").write_text(PROG)
    subprocess.run(
        [
            "cc",
            "-g",
            "-O1",
            "-fno-omit-frame-pointer",
            "-fno-inline",
            "-o",
            str(d / "prog"),
            str(d / "prog.c"),
        ],
        check=True,
    )
    return d / "prog"


def _objects(run_placer, run_id: int) -> dict:  # type: ignore[no-untyped-def]
    out = run_placer("objects", str(run_id), "--format", "json", "--limit", "0", check=True)
    return json.loads(out.stdout)


def _run_id(stderr: str) -> int:
    for line in stderr.splitlines():
        if line.startswith("placer: run ") and "profiling" in line:
            return int(line.split()[2])
    raise AssertionError(f"no run id in stderr:\n{stderr}")


def test_command_not_found_stores_nothing(run_placer) -> None:  # type: ignore[no-untyped-def]
    r = run_placer("profile", "--", "no-such-program-xyz")
    assert r.returncode == 2
    assert r.stderr.strip() == "placer: error: command not found: no-such-program-xyz"
    runs = json.loads(run_placer("runs", "--format", "json", check=True).stdout)
    assert runs["runs"] == []


def test_static_binary_refused(run_placer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "s.c").write_text("int main(void){return 0;}\n")
    built = subprocess.run(
        ["cc", "-static", "-o", str(tmp_path / "s"), str(tmp_path / "s.c")], capture_output=True
    )
    if built.returncode != 0:
        pytest.skip("no static libc here")
    r = run_placer("profile", "--", str(tmp_path / "s"))
    assert r.returncode == 2
    assert "statically linked" in r.stderr and "LD_PRELOAD" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_profile_stores_objects_named_by_lines(run_placer, shim, prog) -> None:  # type: ignore[no-untyped-def]
    r = run_placer("profile", "--name", "prog", "--sample-period", "5", "--", str(prog), "exit3")
    assert r.returncode == 3, r.stderr
    assert r.stdout.startswith("sum ")  # the program's own output, untouched
    run_id = _run_id(r.stderr)
    doc = _objects(run_placer, run_id)
    assert doc["run"]["status"] == "failed" and doc["run"]["exit_code"] == 3
    by_line = {}
    for o in doc["objects"]:
        chain = o["site"]["chain"]
        assert chain, o
        by_line[Path(chain[0]).name] = o
    assert {"prog.c:8", "prog.c:9"} <= set(by_line), by_line.keys()
    hot, cold = by_line["prog.c:8"], by_line["prog.c:9"]
    assert hot["size_bytes"] == 64 * 1024 * 8 and cold["size_bytes"] == 4 * 1024 * 1024 * 8
    assert hot["free_ns"] is not None and cold["free_ns"] is not None
    if doc["run"]["signals"].get("perf", {}).get("faults"):
        assert cold["first_touch_faults"] > 0
    # the program's own time (shim start to END) is inside the wall time, which also
    # holds what wraps the program (perf record's start-up and write-out)
    own = doc["run"]["signals"]["shim"]["program_seconds"]
    assert 0 < own <= doc["run"]["wall_seconds"]


@pytest.mark.slow
def test_same_site_same_id_two_runs(run_placer, shim, prog) -> None:  # type: ignore[no-untyped-def]
    ids = []
    for _ in range(2):
        r = run_placer("profile", "--no-perf", "--", str(prog))
        assert r.returncode == 0, r.stderr
        doc = _objects(run_placer, _run_id(r.stderr))
        ids.append(
            sorted(
                (Path(o["site"]["chain"][0]).name, o["site"]["id"], o["site"]["hash"])
                for o in doc["objects"]
            )
        )
    assert ids[0] == ids[1] and len(ids[0]) >= 2


def test_perf_not_permitted_said_once(run_placer, shim, prog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "perf").write_text(
        "#!/bin/sh\necho 'Error: No permission to enable page-faults event.' >&2\nexit 1\n"
    )
    (bindir / "perf").chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    r = run_placer("profile", "--", str(prog), env=env)
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stderr.splitlines() if "perf unavailable" in ln]
    assert len(notes) == 1 and "No permission" in notes[0]
    doc = _objects(run_placer, _run_id(r.stderr))
    assert len(doc["objects"]) >= 2
    assert doc["run"]["signals"]["perf"]["faults"] is False


def test_crash_keeps_partial_profile(run_placer, shim, prog) -> None:  # type: ignore[no-untyped-def]
    r = run_placer("profile", "--no-perf", "--", str(prog), "crash")
    assert r.returncode == 128 + signal.SIGSEGV
    doc = _objects(run_placer, _run_id(r.stderr))
    assert doc["run"]["status"] == "failed"
    assert doc["run"]["signals"]["terminated_by"] == "SIGSEGV"
    assert len(doc["objects"]) >= 2 and all(o["free_ns"] is None for o in doc["objects"])


def test_killed_program_keeps_what_the_shim_wrote(run_placer, shim, prog) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL leaves no chance to flush: the shim's periodic flush keeps the profile."""
    r = run_placer("profile", "--no-perf", "--", str(prog), "kill")
    assert r.returncode == 128 + signal.SIGKILL, r.stderr
    assert r.stdout.startswith("sum ")
    doc = _objects(run_placer, _run_id(r.stderr))
    assert doc["run"]["status"] == "killed"
    assert doc["run"]["signals"]["terminated_by"] == "SIGKILL"
    assert doc["run"]["signals"]["shim"]["truncated"] is True  # no END record
    names = {Path(o["site"]["chain"][0]).name for o in doc["objects"]}
    assert {"prog.c:8", "prog.c:9"} <= names, names


def test_corrupt_dhat_one_line_exit_2_no_deep_rows(run_placer, shim, prog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    (bindir / "valgrind").write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in --dhat-out-file=*) out=${a#--dhat-out-file=};; '
        "esac; done\n"
        'printf \'{"dhatFileVersion": 2, "mode": "heap", "pps": [{"tb": 1}\' > "$out"\n'
    )
    (bindir / "valgrind").chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
    r = run_placer("profile", "--no-perf", "--deep", "--", str(prog), env=env)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("placer: error:")]
    assert len(errors) == 1 and "corrupt DHAT file" in errors[0], r.stderr
    assert r.stderr.rstrip().endswith(errors[0])
    doc = _objects(run_placer, _run_id(r.stderr))
    assert doc["run"]["status"] == "succeeded"  # the program's own run was fine
    assert "corrupt DHAT file" in doc["run"]["signals"]["deep"]["error"]
    assert len(doc["objects"]) >= 2  # the shim's profile stays
    assert all(o["dhat"] is None for o in doc["objects"])  # no half-stored deep rows


def test_sigint_to_placer_interrupts_and_keeps(placer_env, shim, prog) -> None:  # type: ignore[no-untyped-def]
    p = subprocess.Popen(
        [sys.executable, "-m", "placer", "profile", "--no-perf", "--", str(prog), "wait"],
        env=placer_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None
    deadline = time.monotonic() + 60
    line = ""
    while "ready" not in line and time.monotonic() < deadline:
        line = p.stdout.readline()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    run_id = _run_id(err)
    r = subprocess.run(
        [sys.executable, "-m", "placer", "objects", str(run_id), "--format", "json"],
        env=placer_env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(r.stdout)
    assert doc["run"]["status"] == "interrupted"
    assert len(doc["objects"]) >= 2


@pytest.mark.slow
def test_python_script_named_by_python_lines(run_placer, shim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("numpy")
    script = tmp_path / "emb.py"
    script.write_text(
        textwrap.dedent("""\
        import numpy as np
        def table(rows):
            return np.random.default_rng(0).random((rows, 64))
        emb = table(4000)
        idx = np.arange(0, 4000, 7)
        for _ in range(30):
            emb[idx] += 1.0
        print("done", emb.shape)
        """)
    )
    r = run_placer("profile", "--no-perf", "--", sys.executable, str(script))
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done (4000, 64)\n"
    doc = _objects(run_placer, _run_id(r.stderr))
    py = [o for o in doc["objects"] if o["site"]["language"] == "python"]
    assert py, [o["site"]["chain"][:2] for o in doc["objects"]]
    emb = max(py, key=lambda o: o["size_bytes"])
    assert emb["size_bytes"] >= 4000 * 64 * 8
    assert emb["site"]["chain"][:2] == [f"{script}:3", f"{script}:4"]
    assert doc["run"]["application"] == "emb.py"


@pytest.mark.slow
def test_deep_mode_joins_dhat(run_placer, shim, prog) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind not installed")
    r = run_placer("profile", "--deep", "--", str(prog))
    assert r.returncode == 0, r.stderr
    doc = _objects(run_placer, _run_id(r.stderr))
    deep = {Path(o["site"]["chain"][0]).name: o["dhat"] for o in doc["objects"]}
    assert deep["prog.c:9"]["site_total_bytes"] == 4 * 1024 * 1024 * 8
    assert deep["prog.c:8"]["site_bytes_read"] > deep["prog.c:9"]["site_bytes_read"]
    assert doc["run"]["signals"]["deep"]["sites_matched"] >= 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_redis_jemalloc(placer_env, shim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    for tool in ("redis-server", "redis-benchmark", "redis-cli"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "placer",
            "profile",
            "--name",
            "redis",
            "--",
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        env=placer_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
            )
            if ping.stdout.strip() == "PONG":
                break
            time.sleep(0.2)
        ready_ns = time.monotonic_ns()  # CLOCK_MONOTONIC, the shim's clock
        info = subprocess.run(
            ["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, text=True
        ).stdout
        allocator = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in info.splitlines()
                if ln.startswith("mem_allocator:")
            ),
            "",
        )
        # random keys (-r): the keyspace grows and its hash table is reallocated, bigger
        bench = subprocess.run(
            [
                "redis-benchmark",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-n",
                "20000",
                "-r",
                "100000",
                "-q",
                "-t",
                "set,get",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert bench.returncode == 0 and "SET" in bench.stdout, bench.stdout + bench.stderr
        subprocess.run(
            ["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True, timeout=30
        )
        _, err = server.communicate(timeout=120)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, err
    run_id = _run_id(err)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "placer",
            "objects",
            str(run_id),
            "--format",
            "json",
            "--limit",
            "0",
        ],
        env=placer_env,
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(r.stdout)
    if not allocator.startswith("jemalloc"):
        pytest.skip(f"this redis-server is not built with jemalloc (mem_allocator: {allocator})")
    assert doc["run"]["status"] == "succeeded"
    assert len(doc["objects"]) > 0
    assert any("redis" in f or ".c:" in f for o in doc["objects"] for f in o["site"]["chain"])
    # objects allocated while redis-benchmark ran, through jemalloc behind the shim
    grown = [o for o in doc["objects"] if o["alloc_ns"] > ready_ns]
    assert grown, [(o["size_bytes"], o["alloc_ns"], ready_ns) for o in doc["objects"]]


@pytest.mark.slow
def test_pagerank_objects_and_hot_scores(run_placer, shim) -> None:  # type: ignore[no-untyped-def]
    """Done means (issue 3): CSR arrays, score vectors, edge list named by source lines."""
    pr = REPO / "examples" / "bin" / "pr"
    if not pr.exists():
        built = subprocess.run(
            ["make", "-C", str(REPO / "examples"), "bin/pr"], capture_output=True, text=True
        )
        if built.returncode != 0:
            pytest.skip(f"cannot build examples/bin/pr: {built.stderr[-300:]}")
    r = run_placer(
        "profile", "--name", "pagerank", "--no-perf", "--", str(pr), "-g", "19", "-n", "3"
    )
    assert r.returncode == 0, r.stderr
    doc = _objects(run_placer, _run_id(r.stderr))
    by_site: dict[str, list[dict]] = {}
    for o in doc["objects"]:
        by_site.setdefault(Path(o["site"]["chain"][0]).name, []).append(o)
    src = (REPO / "examples" / "graph" / "pr.c").read_text().splitlines()
    gsrc = (REPO / "examples" / "graph" / "graph.c").read_text().splitlines()

    def line_of(text: list[str], needle: str) -> int:
        return next(i + 1 for i, ln in enumerate(text) if needle in ln)

    scores = f"pr.c:{line_of(src, 'float *p = malloc((size_t)n * sizeof *p);')}"
    edges = f"graph.c:{line_of(gsrc, 'edge_t *p = malloc((size_t)count * sizeof *p);')}"
    offsets = f"graph.c:{line_of(gsrc, 'eid_t *p = malloc(((size_t)n + 1) * sizeof *p);')}"
    assert scores in by_site and edges in by_site and offsets in by_site, sorted(by_site)
    assert len(by_site) >= 5  # edge list, CSR offsets/neighbors/degrees, scores, contributions

    def density(objs: list[dict]) -> float:
        sampled = sum(o["sampled_pages"] for o in objs)
        return sum(o["touched_pages"] for o in objs) / sampled

    assert density(by_site[scores]) > 2 * density(by_site[edges])


def test_truncated_real_log_kept_with_flag(shim, prog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from placer.collectors.profile import ingest
    from placer.collectors.shim.log import read_log
    from placer.store import Store

    env = dict(os.environ, LD_PRELOAD=shim, PLACER_SHIM_LOG=str(tmp_path / "shim.%p.log"))
    subprocess.run([str(prog)], env=env, check=True, capture_output=True)
    (log_path,) = tmp_path.glob("shim.*.log")
    data = log_path.read_bytes()
    log_path.write_bytes(data[:-13])  # cut inside the last record, as SIGKILL can
    log = read_log(log_path)
    assert log.truncated
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    store.upgrade()
    run_id = ingest.begin_run(
        store, app_name="prog", command=[str(prog)], binary_path=str(prog), build_id="", inputs={}
    )
    out = ingest.ingest_profile(
        store,
        run_id,
        ingest.ProfileInputs(logs=[log]),
        ingest.RunOutcome("killed", 137, "SIGKILL", 0.1),
    )
    assert out["truncated"] and out["objects"] >= 2
    from placer.cli.profile import objects_document

    doc = objects_document(store, run_id)
    assert doc["run"]["signals"]["shim"]["truncated"] is True
    assert doc["run"]["status"] == "killed"


def test_corrupt_log_clear_error_nothing_stored(shim, prog, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from placer.collectors.profile import session
    from placer.errors import InvalidInputError
    from placer.store import Store

    original = session._read_logs

    def corrupt_then_read(workdir: Path) -> list:  # type: ignore[type-arg]
        for p in workdir.glob("shim.*.log"):
            p.write_bytes(b"GARBAGE!" + p.read_bytes()[8:])
        return original(workdir)

    monkeypatch.setattr(session, "_read_logs", corrupt_then_read)
    store = Store(f"sqlite:///{tmp_path / 'p.db'}")
    store.upgrade()
    with pytest.raises(InvalidInputError, match="not a placer shim log") as err:
        session.run_profile(store, session.ProfileRequest([str(prog)], perf=False))
    assert "\n" not in str(err.value)
    kept = Path(str(err.value).split("raw files kept in ")[1].rstrip(")"))
    assert any(kept.glob("shim.*.log"))  # kept for a bug report
    shutil.rmtree(kept)
    from placer.cli.profile import objects_document

    doc = objects_document(store, 1)
    assert doc["objects"] == []
    assert doc["run"]["status"] == "succeeded"
    assert "not a placer shim log" in doc["run"]["signals"]["error"]
