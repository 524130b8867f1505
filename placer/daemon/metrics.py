"""Prometheus metrics of the daemon, served on 127.0.0.1 unless configured otherwise."""

from __future__ import annotations

from typing import Any


class Metrics:
    """The daemon's counters and gauges, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge("placer_daemon_jobs", "jobs the daemon watches now", ["kind"], registry=r)
        self.samples = Counter(
            "placer_daemon_samples_ingested_total",
            "shim records, window samples and pipeline reports ingested",
            ["source"],
            registry=r,
        )
        self.migrations = Counter(
            "placer_daemon_migrations_total", "move_pages migrations of objects", registry=r
        )
        self.bytes_moved = Counter(
            "placer_daemon_bytes_moved_total", "bytes move_pages put on another node", registry=r
        )
        self.pages_on_target = Counter(
            "placer_daemon_pages_on_target_total",
            "pages found on the target node after a migration",
            registry=r,
        )
        self.decisions = Counter(
            "placer_daemon_decisions_total", "tier and knob decisions", ["kind"], registry=r
        )
        self.loop_seconds = Histogram(
            "placer_daemon_loop_seconds",
            "time of one loop tick",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.loop_overruns = Counter(
            "placer_daemon_loop_overruns_total",
            "ticks that took longer than the interval",
            registry=r,
        )
        self.buffered = Gauge(
            "placer_daemon_buffered_rows", "rows waiting for the store", registry=r
        )
        self.dropped = Gauge(
            "placer_daemon_dropped_rows",
            "rows dropped because the buffer was full (since start)",
            registry=r,
        )
        self.store_up = Gauge(
            "placer_daemon_store_up", "1 when the last store write worked", registry=r
        )
        self.server: Any = None
        self.thread: Any = None

    def serve(self, host: str, port: int) -> tuple[str, int]:
        from prometheus_client import start_http_server

        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        addr = self.server.server_address
        return str(addr[0]), int(addr[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
