"""A loopback HTTP file server that behaves like remote object storage.

Each GET waits ``--latency-ms`` before the first byte (request latency), then sends at
most ``--conn-mbps`` MB/s per connection and ``--total-mbps`` MB/s over all connections
(a token bucket), in 16 KiB writes. Stdlib only, so it starts fast; run as a script:
``python remote_server.py DIR [--port 0] ...``; it prints ``PORT <n>`` once listening.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNK = 16 * 1024


class Bucket:
    """Token bucket shared by every connection (bytes per second)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            delay = self.next_free - now
        if delay > 0:
            time.sleep(delay)


def make_handler(root: str, latency: float, conn_rate: float, bucket: Bucket) -> type:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            name = os.path.basename(self.path.split("?", 1)[0])
            path = os.path.join(root, name)
            if not name or not os.path.isfile(path):
                self.send_error(404)
                return
            with open(path, "rb") as fh:
                data = fh.read()
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            t0 = time.monotonic()
            sent = 0
            for off in range(0, len(data), CHUNK):
                piece = data[off : off + CHUNK]
                bucket.take(len(piece))
                self.wfile.write(piece)
                sent += len(piece)
                if conn_rate > 0:
                    ahead = t0 + sent / conn_rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)

    return Handler


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up mid-transfer (a killed benchmark) are normal here, not errors."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


def _watch_parent(pid: int) -> None:
    """Exit with the process that started us, even if it was killed without cleaning up."""
    while os.getppid() == pid:
        time.sleep(0.5)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=25.0)
    ap.add_argument("--conn-mbps", type=float, default=4.0, help="per connection, MB/s (0: none)")
    ap.add_argument("--total-mbps", type=float, default=64.0, help="all connections (0: none)")
    ap.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone")
    args = ap.parse_args(argv)
    if args.parent_pid:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()
    handler = make_handler(
        args.root, args.latency_ms / 1000, args.conn_mbps * 1e6, Bucket(args.total_mbps * 1e6)
    )
    server = QuietServer(("127.0.0.1", args.port), handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
