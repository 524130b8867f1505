"""Small hand-built profiles for the emulator and experiment tests.

Each store holds one native run and its deep companion, shaped like what ``placer profile``
and ``placer profile --deep`` store (see collectors/profile/ingest.py): a random-access
table, a streamed array and a small buffer. The numbers are chosen to exercise the model,
not presented as measurements; the calibration test profiles real programs.
"""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024

SITES = {
    "table": ("a1b2c3d4e5f60001", "toy.c:10", 256 * MIB),
    "stream": ("a1b2c3d4e5f60002", "toy.c:20", 256 * MIB),
    "small": ("a1b2c3d4e5f60003", "toy.c:30", 1 * MIB),
}


def build_store(url: str, *, with_deep: bool = True, build_id: str = "b1d0") -> dict[str, Any]:
    """A migrated store with the toy runs; returns their ids."""
    from placer.store import Store
    from placer.store.models import (
        AllocObject,
        Application,
        DeepSiteStat,
        Run,
        Site,
    )

    store = Store(url)
    store.upgrade()
    ids: dict[str, Any] = {"objects": {}}
    with store.session() as s:
        app = Application(name="toy")
        s.add(app)
        s.flush()
        common = {
            "application_id": app.id,
            "kind": "profile",
            "command": ["./toy", "-x"],
            "binary_path": "/bin/toy",
            "build_id": build_id,
            "status": "succeeded",
        }
        native = Run(
            **common,
            inputs={"deep": False},
            wall_seconds=2.0,
            signals={"shim": {"sample_period_ms": 10}},
        )
        s.add(native)
        s.flush()
        ids["native"] = native.id
        site_ids = {}
        for key, (h, frame, _size) in SITES.items():
            site = Site(site_hash=h, frames=[["/bin/toy", 16]], symbolized=[frame])
            s.add(site)
            s.flush()
            site_ids[key] = site.id
        ids["sites"] = site_ids
        # 200 intervals of 10 ms: the table is touched everywhere each interval (random);
        # the stream makes 1 pass per 10 intervals, touching ~10% of sampled pages each.
        series = {"table": [1.0] * 200, "stream": [0.1] * 200, "small": [1.0] * 200}
        for seq, key in enumerate(SITES):
            _h, _f, size = SITES[key]
            obj = AllocObject(
                run_id=native.id,
                site_id=site_ids[key],
                alloc_seq=seq,
                address=0x10000 * (seq + 1),
                size_bytes=size,
                alloc_ns=0,
                free_ns=2_000_000_000,
                summary={
                    "density": sum(series[key]) / len(series[key]),
                    "series": series[key],
                    "lifetime_ns": 2_000_000_000,
                    "write_share": 0.0,
                },
            )
            s.add(obj)
            s.flush()
            ids["objects"][key] = obj.id
        if with_deep:
            deep = Run(**common, inputs={"deep": True}, wall_seconds=30.0)
            s.add(deep)
            s.flush()
            ids["deep"] = deep.id
            traffic = {  # bytes read, written
                "table": (160 * MIB, 16 * MIB),  # 20M random words read...
                "stream": (20 * 256 * MIB, 256 * MIB),  # 20 passes read, 1 written
                "small": (100 * MIB, 100 * MIB),  # hot but cache resident
            }
            for key, (r, w) in traffic.items():
                s.add(
                    DeepSiteStat(
                        run_id=deep.id,
                        site_id=site_ids[key],
                        blocks=1,
                        total_bytes=SITES[key][2],
                        bytes_read=r,
                        bytes_written=w,
                    )
                )
    store.dispose()
    return ids
