"""``placer daemon | jobs | job | attach | detach``: the daemon and its control commands.

``placer daemon`` runs the service in the foreground (docs/daemon.md); the other commands
talk to it over its Unix socket. ``placer jobs`` and ``placer job`` fall back to the store
(the daemon's history) when no daemon answers or with ``--history``. Documents printed
with ``--format json`` are described in docs/cli.md (Daemon).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from placer.cli.context import Context
from placer.daemon.client import DaemonUnavailable, request, socket_path
from placer.daemon.config import load_config
from placer.daemon.job import migration_summary
from placer.daemon.service import Daemon, json_log
from placer.daemon.unit import unit_text
from placer.errors import InvalidInputError, NotFoundError
from placer.store.repository.daemon import daemon_jobs, job_events


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    sock = argparse.ArgumentParser(add_help=False)
    sock.add_argument(
        "--socket",
        metavar="PATH",
        help="daemon socket (default: $PLACER_DAEMON_SOCKET, else "
        "$XDG_RUNTIME_DIR/placer/daemon.sock or the data directory)",
    )

    p = sub.add_parser(
        "daemon",
        parents=[common, sock],
        help="run the placer daemon in the foreground (or: daemon status)",
        description="Run the daemon in the foreground: JSON-lines logs on "
        "stderr, SIGTERM stops it, SIGHUP reloads its config. "
        "`placer daemon status` asks a running daemon how it is; `placer daemon unit` "
        "prints a systemd unit that starts this installation's daemon.",
    )
    p.add_argument(
        "action",
        nargs="?",
        choices=["run", "status", "unit"],
        default="run",
        help="run (default); status: ask the running daemon; unit: print the systemd unit "
        "(ExecStart filled in for this installation)",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config (default: $PLACER_DAEMON_CONFIG, else daemon.toml in "
        "the data directory if present)",
    )
    p.add_argument("--interval", type=float, metavar="S", help="loop interval in seconds")
    p.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="Prometheus address (default 127.0.0.1:9464; '' turns it off)",
    )
    p.add_argument("--no-migrate", action="store_true", help="decide only: never move pages")
    p.set_defaults(handler=_daemon)

    j = sub.add_parser("jobs", parents=[common, sock], help="jobs the daemon watches")
    j.add_argument(
        "--history", action="store_true", help="every job the store remembers, closed ones included"
    )
    j.add_argument("--limit", type=int, default=50, help="with --history: newest N (default 50)")
    j.set_defaults(handler=_jobs)

    o = sub.add_parser(
        "job", parents=[common, sock], help="one daemon job: its current decisions and why"
    )
    o.add_argument("id", type=int, metavar="ID", help="job id (see `placer jobs`)")
    o.add_argument("--history", action="store_true", help="read the store, not the daemon")
    o.set_defaults(handler=_job)

    a = sub.add_parser(
        "attach",
        parents=[common, sock],
        help="attach the daemon to a running process (yours, or any as root)",
    )
    a.add_argument(
        "pid", type=int, metavar="PID", help="the process to watch (yours, or any as root)"
    )
    a.set_defaults(handler=_attach)

    d = sub.add_parser("detach", parents=[common, sock], help="stop watching a job")
    d.add_argument("id", type=int, metavar="ID", help="job id (see `placer jobs`)")
    d.set_defaults(handler=_detach)


def _human(n: int | None) -> str:
    if n is None:
        return ""
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(x) < 1024 or unit == "GiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return str(n)


def _num(x: Any, digits: int = 4) -> Any:
    """A float for a table cell: ``digits`` significant digits (ints and text as they are)."""
    if isinstance(x, float):
        if x != x:
            return "nan"
        return f"{x:.{digits}g}"
    return x


def _nodes(counts: dict[str, Any] | None) -> str:
    return ",".join(f"{k}:{v}" for k, v in sorted((counts or {}).items())) or "-"


def _store_migrations(ctx: Context, job_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The job's newest ``migration`` events from the store, oldest first, summarized."""
    with ctx.open_store(create=False) as store, store.session() as s:
        rows = job_events(s, job_id, "migration", limit)
    return [
        migration_summary(at.isoformat() if at else "", dict(doc or {}))
        for at, doc in reversed(rows)
    ]


# ------------------------------------------------------------------------ daemon
def _daemon(args: argparse.Namespace, ctx: Context) -> int:
    if args.action == "status":
        return _status(args, ctx)
    if args.action == "unit":
        text = unit_text()
        ctx.emit({"unit": text}, lambda d: print(d["unit"], end=""))
        return 0
    # the command line wins over the environment and the file, at start and on SIGHUP
    over: dict[str, Any] = {}
    if args.socket:
        over["socket"] = args.socket
    if args.interval is not None:
        over["interval"] = args.interval
    if args.metrics is not None:
        over["metrics"] = args.metrics
    if args.no_migrate:
        over["migrate"] = False
    cfg = load_config(args.config, overrides=over)
    config_path = args.config or os.environ.get("PLACER_DAEMON_CONFIG")
    daemon = Daemon(cfg, ctx.store_url, config_path, json_log(cfg.log_level), overrides=over)
    return daemon.run()


def _status(args: argparse.Namespace, ctx: Context) -> int:
    try:
        doc = {"running": True, **request("status", args.socket)["status"]}
    except DaemonUnavailable as exc:
        doc = {"running": False, "socket": str(socket_path(args.socket)), "reason": str(exc)}

    def render(d: dict[str, Any]) -> None:
        if not d["running"]:
            print(f"placer daemon: not running ({d['reason']})")
            return
        loop, buf = d["loop"], d["store_buffer"]
        print(
            f"placer daemon: running, pid {d['pid']}, up {d['uptime_seconds']:.0f} s, "
            f"model {d['model']}"
        )
        print(f"  socket {d['socket']}; metrics {d['metrics'] or 'off'}; store {d['store']}")
        print(f"  jobs: {d['jobs']['objects']} objects, {d['jobs']['pipeline']} pipeline")
        print(
            f"  loop: {loop['ticks']} ticks every {loop['interval']} s, last "
            f"{1000 * loop['last_seconds']:.1f} ms, max {1000 * loop['max_seconds']:.1f} ms, "
            f"{loop['overruns']} overruns"
        )
        print(
            f"  store: {buf['pending']} rows buffered (max {buf['max']}), "
            f"{buf['dropped']} dropped, {buf['written_events']} events written"
            + (f"; last error: {buf['last_error']}" if buf["last_error"] else "")
        )
        t = d["totals"]
        print(
            f"  totals: {t['samples']} samples, {t['decisions']} decisions, "
            f"{t['migrations']} migrations ({_human(t['bytes_moved'])} moved), "
            f"{t['knob_changes']} knob changes, {t['jobs_closed']} jobs closed"
        )

    ctx.emit(doc, render)
    return 0 if doc["running"] else 3


# ------------------------------------------------------------------------ jobs
def _store_jobs(ctx: Context, limit: int, job_id: int | None = None) -> list[dict[str, Any]]:
    with ctx.open_store(create=False) as store, store.session() as s:
        out = []
        for j in daemon_jobs(s, limit=limit, job_id=job_id):
            st = dict(j.state or {})
            out.append(
                {
                    "id": j.id,
                    "pid": j.pid,
                    "kind": j.kind,
                    "status": j.status,
                    "command": list(j.command or []),
                    "objects": None,
                    "live_bytes": None,
                    "decisions": int(st.get("decisions_total") or 0)
                    if "decisions_total" in st
                    else len(st.get("decisions") or []),
                    "migrations": int(st.get("migrations") or 0),
                    "bytes_migrated": int(st.get("bytes_migrated") or 0),
                    "samples_ingested": int(st.get("samples_ingested") or 0),
                    "knobs": st.get("knobs") if j.kind == "pipeline" else None,
                    "source": "store",
                    "attached_at": j.attached_at.isoformat() if j.attached_at else None,
                    "detached_at": j.detached_at.isoformat() if j.detached_at else None,
                    "last_seen_at": j.last_seen_at.isoformat() if j.last_seen_at else None,
                    "run_id": j.run_id,
                    "state": st,
                }
            )
        return out


def _jobs(args: argparse.Namespace, ctx: Context) -> int:
    doc: dict[str, Any]
    if args.history:
        doc = {"source": "store", "jobs": _store_jobs(ctx, args.limit)}
        for j in doc["jobs"]:
            j.pop("state", None)
    else:
        try:
            doc = {"source": "daemon", "jobs": request("jobs", args.socket)["jobs"]}
        except DaemonUnavailable as exc:
            doc = {
                "source": "store",
                "note": str(exc),
                "jobs": [j for j in _store_jobs(ctx, args.limit) if j["status"] == "attached"],
            }
            for j in doc["jobs"]:
                j.pop("state", None)

    def render(d: dict[str, Any]) -> None:
        if d.get("note"):
            print(f"note: {d['note']}; showing the store's attached jobs")
        ctx.table(
            f"daemon jobs ({d['source']})",
            [
                "job",
                "pid",
                "kind",
                "status",
                "objects",
                "decisions",
                "migrations",
                "moved",
                "knobs",
                "command",
            ],
            [
                [
                    j["id"],
                    j["pid"],
                    j["kind"],
                    j["status"],
                    j["objects"],
                    j["decisions"],
                    j["migrations"],
                    _human(j["bytes_migrated"]),
                    " ".join(f"{k}={v}" for k, v in (j["knobs"] or {}).items()),
                    " ".join(map(str, j["command"]))[:60],
                ]
                for j in d["jobs"]
            ],
        )

    ctx.emit(doc, render)
    return 0


def _job(args: argparse.Namespace, ctx: Context) -> int:
    job: dict[str, Any] | None = None
    if not args.history:
        try:
            job = request("job", args.socket, job=args.id)["job"]
        except (DaemonUnavailable, NotFoundError):
            job = None
    if job is None:
        rows = _store_jobs(ctx, 0, args.id)
        if not rows:
            raise NotFoundError(f"job {args.id} is not in the store (see `placer jobs --history`)")
        row = rows[0]
        st = row.pop("state")
        job = {
            **row,
            "model": st.get("model"),
            "budget": st.get("budget"),
            "shim_log": (st.get("tail") or {}).get("path"),
            "current": [{"object": k, "tier": v} for k, v in (st.get("tiers") or {}).items()],
            "recent_decisions": list(st.get("decisions") or [])[-20:],
            "knob_changes": list(st.get("knob_changes") or [])[-20:],
            "trials": st.get("trials"),
            "settled": st.get("settled"),
            "best": st.get("best"),
            "exit": st.get("exit"),
            "first_samples_per_second": st.get("first_samples_per_second"),
            "last_samples_per_second": st.get("last_samples_per_second"),
            "first_trial": st.get("first_trial"),
            "study": st.get("study"),
            "signals": st.get("signals"),
            "migrations_total": int(st.get("migrations") or 0),
            "migrations": _store_migrations(ctx, args.id),
        }
    doc = {"job": job}

    def render(d: dict[str, Any]) -> None:
        j = d["job"]
        print(
            f"job {j['id']} ({j['kind']}, {j['status']}, {j['source']}): pid {j['pid']} "
            f"{' '.join(map(str, j['command']))[:80]}"
        )
        extra = []
        if j.get("run_id") is not None:
            extra.append(f"run {j['run_id']}")
        if (j.get("signals") or {}).get("counters"):
            extra.append(f"counters: {j['signals']['counters']}")
        if extra:
            print("  " + "; ".join(extra))
        if j["kind"] == "objects":
            print(
                f"  model {j.get('model')}, DRAM budget {j.get('budget')}; "
                f"{j.get('migrations_total', 0)} migrations, {_human(j['bytes_migrated'])} moved"
                + (f"; shim log {j['shim_log']}" if j.get("shim_log") else "")
            )
            cur = j.get("current") or []
            if cur and "size_bytes" in cur[0]:
                ctx.table(
                    "objects, most critical first",
                    [
                        "object",
                        "site",
                        "size",
                        "tier",
                        "score",
                        "pred. penalty",
                        "density",
                        "samples",
                    ],
                    [
                        [
                            o["object"],
                            o["site"][:16],
                            _human(o["size_bytes"]),
                            o["tier"],
                            _num(o["score"]),
                            _num(o["predicted_penalty"], 3),
                            _num(o["density_mean"], 3),
                            o["samples"],
                        ]
                        for o in cur[:20]
                    ],
                )
            migs = j.get("migrations") or []
            if migs:
                ctx.table(
                    f"migrations, newest {len(migs)} of {j.get('migrations_total', len(migs))}",
                    ["at", "object", "node", "moved/asked", "failed", "errno", "numa_maps"],
                    [
                        [
                            str(m.get("at", ""))[11:19],
                            m.get("object"),
                            m.get("node"),
                            f"{m.get('moved')}/{m.get('pages')}",
                            m.get("failed"),
                            " ".join(f"{k}={v}" for k, v in (m.get("errors") or {}).items()) or "-",
                            f"{_nodes(m.get('numa_maps_before'))}>"
                            f"{_nodes(m.get('numa_maps_after'))}",
                        ]
                        for m in migs
                    ],
                )
        else:
            best = j.get("best") or {}
            print(
                f"  knobs {j.get('knobs')}; {j.get('trials')} trials"
                f"{' (settled)' if j.get('settled') else ''}; first "
                f"{_num(j.get('first_samples_per_second'))} samples/s, last "
                f"{_num(j.get('last_samples_per_second'))}, best "
                f"{_num(best.get('samples_per_second'))} with {best.get('knobs')}"
                + (f"; study {j['study']}" if j.get("study") else "")
            )
            ft = j.get("first_trial")
            if ft:
                print(f"  first trial ({ft.get('source')}): {ft.get('reason')}")
        ctx.table(
            "recent decisions",
            ["at", "action", "why"],
            [
                [x.get("at", "")[:19], x.get("action"), x.get("reason")]
                for x in j["recent_decisions"]
            ],
        )

    ctx.emit(doc, render)
    return 0


def _attach(args: argparse.Namespace, ctx: Context) -> int:
    if args.pid <= 0:
        raise InvalidInputError(f"invalid pid {args.pid}")
    reply = request("attach", args.socket, pid=args.pid, kind="objects")
    doc = {"job": reply["job"], "existing": bool(reply.get("existing"))}
    ctx.emit(
        doc,
        lambda d: print(
            f"{'already attached as' if d['existing'] else 'attached:'} job {d['job']['id']} "
            f"(pid {d['job']['pid']}, {' '.join(map(str, d['job']['command']))[:60]})"
        ),
    )
    return 0


def _detach(args: argparse.Namespace, ctx: Context) -> int:
    reply = request("detach", args.socket, job=args.id)
    doc = {"job": reply["job"]}
    ctx.emit(doc, lambda d: print(f"detached job {d['job']['id']} (pid {d['job']['pid']})"))
    return 0
