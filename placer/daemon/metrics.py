"""Prometheus metrics of the daemon, served on 127.0.0.1 unless configured otherwise.

The counters are not kept here: a collector reads them from the daemon's
:class:`~placer.daemon.telemetry.Telemetry` at each scrape, the numbers the status
document shows. Only what is a sample of now (gauges, the tick-time histogram) is set here.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from placer.daemon.telemetry import Telemetry


class _TelemetryCollector:
    """The daemon's counters as Prometheus counter families, read from its telemetry."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are produced at each scrape

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily  # lazy: heavy

        t = self.telemetry
        with t.lock:
            samples, decisions = dict(t.samples), dict(t.decisions)
            scalars = (t.migrations, t.bytes_moved, t.pages_on_target, t.overruns)
        fam = CounterMetricFamily(
            "placer_daemon_samples_ingested",
            "shim records, window samples and pipeline reports ingested",
            labels=["source"],
        )
        for source, n in samples.items():
            fam.add_metric([source], n)
        yield fam
        for name, text, value in zip(
            (
                "placer_daemon_migrations",
                "placer_daemon_bytes_moved",
                "placer_daemon_pages_on_target",
                "placer_daemon_loop_overruns",
            ),
            (
                "move_pages migrations of objects",
                "bytes move_pages put on another node",
                "pages found on the target node after a migration",
                "ticks that took longer than the interval",
            ),
            scalars,
            strict=True,
        ):
            yield CounterMetricFamily(name, text, value=value)
        fam = CounterMetricFamily(
            "placer_daemon_decisions", "tier and knob decisions", labels=["kind"]
        )
        for kind, n in decisions.items():
            fam.add_metric([kind], n)
        yield fam


class Metrics:
    """The daemon's metrics, in a registry of their own."""

    def __init__(self, telemetry: Telemetry) -> None:
        from prometheus_client import CollectorRegistry, Gauge, Histogram  # lazy: heavy

        self.registry = CollectorRegistry()
        r = self.registry
        r.register(_TelemetryCollector(telemetry))
        self.jobs = Gauge("placer_daemon_jobs", "jobs the daemon watches now", ["kind"], registry=r)
        self.loop_seconds = Histogram(
            "placer_daemon_loop_seconds",
            "time of one loop tick",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
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
        from prometheus_client import start_http_server  # lazy: heavy

        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        addr = self.server.server_address
        return str(addr[0]), int(addr[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
