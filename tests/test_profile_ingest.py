"""Ingestion into the store: objects, chunks, metrics, Python names, perf mem, DHAT."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from sqlalchemy import func, select

from placer.cli.profile import objects_document
from placer.collectors.profile import ingest, perf
from placer.errors import InvalidInputError
from placer.store import Store
from placer.store.models import AllocObject, DeepSiteStat, ObjectMetric, Run, Site

DATA = Path(__file__).parent / "data" / "profile"
T0 = 1000 * 10**9  # shim start, CLOCK_MONOTONIC ns (matches perf_mem_script.txt)
MiB = 1 << 20


def _log(pid: int = 4242, truncated: bool = False) -> NS:
    """A ShimLog as placer.collectors.shim.log.read_log returns it (same attribute names)."""
    header = NS(
        version=1,
        start_ns=T0,
        pid=pid,
        ppid=1,
        page_size=4096,
        stack_depth=4,
        flags=1,
        threshold=65536,
        sample_period_ms=100,
    )
    modules = {1: ("/opt/app/bin/app", bytes.fromhex("ab" * 20)), 2: ("/lib/libc.so.6", b"")}
    sites = {
        0x1111: [("/opt/app/bin/app", 0x1234), ("/lib/libc.so.6", 0x271CA)],
        0x2222: [("/opt/app/bin/app", 0x2000)],
    }
    allocs = [
        NS(
            seq=1,
            time_ns=T0 + 10,
            address=0x7F0000001000,
            size=64 * 1024,
            site_hash=0x1111,
            tid=4242,
            kind="malloc",
        ),
        NS(
            seq=2,
            time_ns=T0 + 20,
            address=0x7F0000200000,
            size=5 * MiB,
            site_hash=0x2222,
            tid=4242,
            kind="mmap",
        ),
        NS(
            seq=3,
            time_ns=T0 + 700_000_000,
            address=0x7F0000001000,
            size=4096 * 20,
            site_hash=0x1111,
            tid=4242,
            kind="malloc",
        ),
    ]
    frees = [NS(seq=1, time_ns=T0 + 550_000_000, address=0x7F0000001000, kind="free")]
    samples = [
        NS(
            seq=1,
            start_ns=T0,
            end_ns=T0 + 100_000_000,
            interval=0,
            sampled_pages=4,
            touched_pages=4,
            written_pages=1,
        ),
        NS(
            seq=2,
            start_ns=T0,
            end_ns=T0 + 100_000_000,
            interval=0,
            sampled_pages=8,
            touched_pages=2,
            written_pages=2,
        ),
        NS(
            seq=2,
            start_ns=T0 + 100_000_000,
            end_ns=T0 + 200_000_000,
            interval=1,
            sampled_pages=8,
            touched_pages=0,
            written_pages=0,
        ),
    ]
    end = NS(time_ns=T0 + 900_000_000, dropped_records=0, reason=0)
    return NS(
        header=header,
        modules=modules,
        sites=sites,
        allocs=allocs,
        frees=frees,
        samples=samples,
        binds=[],
        end=end,
        truncated=truncated,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'p.db'}")
    s.upgrade()
    return s


def _run(store: Store) -> int:
    return ingest.begin_run(
        store,
        app_name="app",
        command=["app"],
        binary_path="/opt/app/bin/app",
        build_id="ab" * 20,
        inputs={},
    )


OK = ingest.RunOutcome(status="succeeded", exit_code=0, signal=None, wall_seconds=1.0)


def test_objects_chunks_metrics_and_perf_mem(store: Store) -> None:
    samples = list(perf.parse_script((DATA / "perf_mem_script.txt").read_text()))
    run_id = _run(store)
    inputs = ingest.ProfileInputs(
        logs=[_log()],
        chunk_size=2 * MiB,
        perf_samples=samples,
        perf_signals={"faults": True, "mem": True},
    )
    summary = ingest.ingest_profile(store, run_id, inputs, OK)
    assert summary["objects"] == 1 + 3 + 1  # the 5 MiB mmap is split into 3 chunks
    doc = objects_document(store, run_id, "seq")
    objs = doc["objects"]
    assert [(o["alloc_seq"], o["chunk_index"]) for o in objs] == [
        (1, 0),
        (2, 0),
        (2, 1),
        (2, 2),
        (3, 0),
    ]
    assert [o["size_bytes"] for o in objs[1:4]] == [2 * MiB, 2 * MiB, 1 * MiB]
    assert objs[1]["address"] + 2 * MiB == objs[2]["address"]
    # page-poison samples: object 1 fully touched, object 2 a quarter then nothing
    assert objs[0]["density"] == 1.0 and objs[0]["write_share"] == 0.25
    assert objs[1]["density"] == pytest.approx(2 / 16)
    assert objs[1]["poison_scope"] == "object"
    # perf mem: object 1 got the L1 load, the store (interval 0); its successor at the same
    # address got the load at +0.6 s only after its own allocation at +0.7 s? no: +0.6 s is
    # after object 1's free (+0.55 s) and before object 3 (+0.7 s): unmatched.
    assert objs[0]["perf_mem"]["samples"] == 2
    assert objs[0]["perf_mem"]["by_level"]["L1"] == 2
    assert objs[0]["perf_mem"]["by_level"]["store"] == 1
    chunk0 = objs[1]["perf_mem"]  # 0x7f0000201000 lies in the first 2 MiB chunk
    assert chunk0["samples"] == 3 and chunk0["llc_misses"] == 3 and chunk0["tlb_misses"] == 1
    assert chunk0["latency_sum"] == 312 + 655 + 421
    assert objs[2]["perf_mem"] is None and objs[4]["perf_mem"] is None
    # the other pid's sample and the one outside every object are counted, not attributed
    run_signals = doc["run"]["signals"]
    assert run_signals["perf"]["mem_samples"] == 7
    assert run_signals["perf"]["mem_samples_unmatched"] == 2
    assert doc["run"]["status"] == "succeeded"
    # sites are named by symbolized frames (no debug info here: module+offset)
    assert objs[0]["site"]["chain"][0] == "app+0x1234"
    assert objs[0]["site"]["id"] == objs[4]["site"]["id"]
    # full series in JSON
    assert [m["interval"] for m in objs[1]["series"]] == [0, 1]


def test_same_site_same_id_across_runs(store: Store) -> None:
    ids = []
    for _ in range(2):
        run_id = _run(store)
        ingest.ingest_profile(store, run_id, ingest.ProfileInputs(logs=[_log()]), OK)
        ids.append(
            {o["alloc_seq"]: o["site"]["id"] for o in objects_document(store, run_id)["objects"]}
        )
    assert ids[0] == ids[1]
    with store.session() as s:
        assert s.scalar(select(func.count(Site.id))) == 2


def test_python_sightings_name_objects(store: Store) -> None:
    run_id = _run(store)
    sightings = [
        {
            "t": T0 + 30,
            "addr": 0x7F0000200000,
            "size": 5 * MiB,
            "type": "ndarray",
            "tb": [
                ["/venv/lib/python3.11/site-packages/numpy/_core/numeric.py", 232],
                ["/work/job.py", 3],
                ["/work/job.py", 10],
            ],
        },
        {"t": T0 + 40, "addr": 0x1234, "size": 5, "type": "bytes", "tb": []},
    ]
    ingest.ingest_profile(
        store, run_id, ingest.ProfileInputs(logs=[_log()], py_sightings=sightings), OK
    )
    objs = objects_document(store, run_id, "seq")["objects"]
    py = objs[1]
    assert py["site"]["language"] == "python"
    assert py["site"]["chain"] == ["/work/job.py:3", "/work/job.py:10"]
    assert objs[0]["site"]["language"] == "c"


def test_truncated_log_is_kept_with_flag(store: Store) -> None:
    run_id = _run(store)
    out = ingest.ingest_profile(
        store,
        run_id,
        ingest.ProfileInputs(logs=[_log(truncated=True)]),
        ingest.RunOutcome("killed", 137, "SIGKILL", 0.5),
    )
    assert out["truncated"] is True
    with store.session() as s:
        run = s.get(Run, run_id)
        assert run.status == "killed" and run.exit_code == 137
        assert run.signals["shim"]["truncated"] is True
        assert run.signals["terminated_by"] == "SIGKILL"


def test_dhat_all_or_nothing(store: Store, tmp_path: Path) -> None:
    run_id = _run(store)
    log = _log()
    sym = NS(
        symbolize_frames=lambda module, bid, offs: {
            o: (
                [(f"/src/d.c:{3 if o == 0x1234 else 4}", "grow"), ("/src/d.c:4", "main")]
                if "app" in module
                else [(f"libc.so.6+{o:#x}", "")]
            )
            for o in offs
        }
    )
    ingest.ingest_profile(store, run_id, ingest.ProfileInputs(logs=[log], symbolizer=sym), OK)
    bad = tmp_path / "bad.json"
    bad.write_text('{"dhatFileVersion": 2, "pps": [{"tb": 1}], "ftbl": []}')
    with pytest.raises(InvalidInputError, match="corrupt DHAT"):
        ingest.ingest_dhat(store, run_id, bad, wall_seconds=1.0)
    with store.session() as s:
        assert s.scalar(select(func.count(DeepSiteStat.id))) == 0
    got = ingest.ingest_dhat(store, run_id, DATA / "dhat_small.json", wall_seconds=2.0)
    assert got["sites_matched"] == 2
    with store.session() as s:
        stats = {d.total_bytes: d for d in s.scalars(select(DeepSiteStat))}
        assert stats[800000].bytes_read == 400000 and stats[800000].bytes_written == 800000
        assert stats[400000].total_lifetime_ns > 0
        assert s.scalar(select(func.count(ObjectMetric.id))) > 0
        assert s.scalar(select(func.count(AllocObject.id))) == 3
    doc = objects_document(store, run_id, "dhat-reads")
    assert doc["objects"][0]["dhat"]["site_bytes_read"] in (400000, 400008)
    # each frame's function is stored beside the chain, one per frame
    for o in doc["objects"]:
        assert "grow" in o["site"]["functions"]
        assert len(o["site"]["functions"]) == len(o["site"]["chain"])


def test_cli_runs_and_objects_tables(run_placer, placer_env) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{placer_env['PLACER_DATA_DIR']}/placer.db"
    st = Store(url, create_dirs=True)
    st.upgrade()
    run_id = _run(st)
    ingest.ingest_profile(st, run_id, ingest.ProfileInputs(logs=[_log()], chunk_size=2 * MiB), OK)
    st.dispose()
    runs = run_placer("runs", check=True).stdout
    assert "succeeded" in runs and "app" in runs
    table = run_placer("objects", str(run_id), check=True).stdout
    assert "app+0x1234" in table and "[0/3]" in table and "5.0 MiB" not in table
    assert "▁" in table or "█" in table  # density over time as a sparkline
    doc = json.loads(
        run_placer(
            "objects", str(run_id), "--format", "json", "--sort", "size", "--limit", "2", check=True
        ).stdout
    )
    assert doc["total_objects"] == 5 and len(doc["objects"]) == 2
    assert doc["objects"][0]["size_bytes"] == 2 * MiB
    missing = run_placer("objects", "999")
    assert missing.returncode == 2 and "run 999 not found" in missing.stderr


def test_choose_log_picks_the_program() -> None:
    def fake(pid: int, ppid: int, start: int, n_allocs: int) -> NS:
        return NS(header=NS(pid=pid, ppid=ppid, start_ns=start), allocs=[object()] * n_allocs)

    launcher = fake(10, 1, 100, 0)  # exec'd into the program: same pid, later image
    program = fake(10, 1, 200, 5)
    child = fake(11, 10, 300, 9)  # a forked helper of the program
    main, others = ingest.choose_log([child, launcher, program])
    assert main is program and set(map(id, others)) == {id(child), id(launcher)}
    shell = fake(20, 1, 100, 0)  # `sh script`: the shell allocates nothing big
    worker = fake(21, 20, 150, 3)
    assert ingest.choose_log([shell, worker])[0] is worker


def test_ingest_on_both_backends(store_url: str) -> None:
    """Bulk inserts with RETURNING keep row order on SQLite and PostgreSQL alike."""
    st = Store(store_url)
    st.upgrade()
    try:
        run_id = _run(st)
        ingest.ingest_profile(
            st, run_id, ingest.ProfileInputs(logs=[_log()], chunk_size=2 * MiB), OK
        )
        objs = objects_document(st, run_id, "seq")["objects"]
        assert [(o["alloc_seq"], o["chunk_index"], o["size_bytes"]) for o in objs] == [
            (1, 0, 64 * 1024),
            (2, 0, 2 * MiB),
            (2, 1, 2 * MiB),
            (2, 2, MiB),
            (3, 0, 4096 * 20),
        ]
        assert [m["interval"] for m in objs[1]["series"]] == [0, 1]
    finally:
        st.dispose()


def test_first_touch_counts_each_page_once(store: Store) -> None:
    def fault(t: int, addr: int, pid: int = 4242) -> perf.PerfSample:
        return perf.PerfSample(pid=pid, tid=pid, time_ns=T0 + t, event=perf.FAULT_EVENT, addr=addr)

    base = 0x7F0000001000
    samples = [
        fault(100, base),
        fault(200, base + 8),
        fault(300, base + 4096),
        fault(50_000_000, base + 64),
        fault(400, base, pid=999),
        perf.PerfSample(4242, 4242, T0 + 500, perf.CLOCK_EVENT, 0),
    ]
    run_id = _run(store)
    ingest.ingest_profile(
        store, run_id, ingest.ProfileInputs(logs=[_log()], perf_samples=samples), OK
    )
    doc = objects_document(store, run_id, "seq")
    assert doc["objects"][0]["first_touch_faults"] == 2  # two pages, the first fault of each
    assert doc["run"]["signals"]["perf"]["page_faults"] == 4  # every fault of the program
    assert doc["run"]["signals"]["perf"]["task_clock_ms"] == 1


def test_tracemalloc_own_tables_recognized() -> None:
    own = ([], ["/py/Modules/_tracemalloc.c:810", "/py/Modules/_tracemalloc.c:621"])
    table = ([], ["/py/Python/hashtable.c:288", "/py/Modules/_tracemalloc.c:569"])
    program = ([], ["/py/Objects/obmalloc.c:2003", "/py/Modules/_tracemalloc.c:599"])
    plain = ([], ["/py/Python/hashtable.c:288", "/py/Python/marshal.c:300"])
    assert ingest._profiler_own(own) and ingest._profiler_own(table)
    assert not ingest._profiler_own(program) and not ingest._profiler_own(plain)
    assert not ingest._profiler_own(None)
