"""(d) Remote storage: shards fetched over HTTP from a loopback server → decode → batch.

The server (``remote_server.py``) injects per-request latency and caps bandwidth per
connection and in total, so fetching is latency-bound the way object storage is: one
fetch at a time (the naive configuration) leaves the CPU idle; many in flight hide it.
An element is one shard of ``records`` samples, stored as an ``.npy`` of uint8 features.
"""

from __future__ import annotations

import atexit
import io
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from placer.collectors.pipeline.spec import PipelineSpec, StageSpec
from examples.pipelines.common import cached_dataset, concat_collate, size_name

PARAMS = {
    "tiny": {"shards": 8, "records": 8, "dim": 64, "batch": 2, "latency_ms": 5.0},
    "small": {"shards": 128, "records": 32, "dim": 2048, "batch": 2, "latency_ms": 25.0},
}
CONN_MBPS = 4.0
TOTAL_MBPS = 64.0


def _make(shards: int, records: int, dim: int) -> Any:
    def make(out: Path) -> None:
        rng = np.random.default_rng(5)
        for i in range(shards):
            feats = rng.integers(0, 256, size=(records, dim), dtype=np.uint8)
            labels = rng.integers(0, 10, size=records).astype(np.uint8)
            np.save(out / f"shard_{i:05d}.npy", np.concatenate([labels[:, None], feats], axis=1))

    return make


def dataset(size: str | None = None) -> tuple[Path, dict[str, Any]]:
    size = size or size_name()
    p = PARAMS[size]
    root = cached_dataset(
        "remote",
        {"size": size, "shards": p["shards"], "records": p["records"], "dim": p["dim"], "v": 1},
        _make(p["shards"], p["records"], p["dim"]),
    )
    return root, p


class ShardServer:
    """The loopback server process for one directory (one per process, reused)."""

    _servers: dict[tuple[str, float, float, float], ShardServer] = {}
    _lock = threading.Lock()

    def __init__(self, root: Path, latency_ms: float, conn_mbps: float, total_mbps: float):
        script = Path(__file__).with_name("remote_server.py")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(root),
                "--latency-ms",
                str(latency_ms),
                "--conn-mbps",
                str(conn_mbps),
                "--total-mbps",
                str(total_mbps),
                "--parent-pid",
                str(os.getpid()),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.proc.kill()
            raise RuntimeError(f"shard server did not start (said {' '.join(line)!r})")
        self.url = f"http://127.0.0.1:{line[1]}"
        atexit.register(self.stop)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @classmethod
    def get(
        cls,
        root: Path,
        latency_ms: float,
        conn_mbps: float = CONN_MBPS,
        total_mbps: float = TOTAL_MBPS,
    ) -> ShardServer:
        key = (str(root), latency_ms, conn_mbps, total_mbps)
        with cls._lock:
            server = cls._servers.get(key)
            if server is None or server.proc.poll() is not None:
                server = cls._servers[key] = cls(root, latency_ms, conn_mbps, total_mbps)
            return server


class Fetch:
    """GET one shard URL (one keep-alive session per thread and process)."""

    def __init__(self, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._local = threading.local()

    def __call__(self, url: str) -> bytes:
        import requests

        # A forked DataLoader worker inherits the forking thread's session and its open
        # socket, shared with the parent: a process makes its own.
        pid = os.getpid()
        session = getattr(self._local, "session", None)
        if session is None or getattr(self._local, "pid", None) != pid:
            session = self._local.session = requests.Session()
            self._local.pid = pid
        resp = session.get(url, timeout=self.timeout)
        resp.raise_for_status()
        return resp.content

    def __getstate__(self) -> dict[str, Any]:
        return {"timeout": self.timeout}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["timeout"])  # type: ignore[misc]


def decode(data: bytes) -> dict[str, np.ndarray]:
    """npy shard → float features scaled to [0, 1) and int64 labels."""
    arr = np.load(io.BytesIO(data), allow_pickle=False)
    return {
        "features": arr[:, 1:].astype(np.float32) * np.float32(1 / 256),
        "label": arr[:, 0].astype(np.int64),
    }


def spec(size: str | None = None) -> PipelineSpec:
    # Import the stages' libraries now, as a job does at start: trials fork from this
    # process and would otherwise pay the import inside their first epoch.
    import requests  # noqa: F401

    root, p = dataset(size)
    server = ShardServer.get(root, p["latency_ms"])
    names = sorted(f.name for f in root.glob("shard_*.npy"))
    urls = [f"{server.url}/{n}" for n in names]
    n, rec, dim = len(names), p["records"], p["dim"]
    return PipelineSpec(
        name="remote",
        items=lambda: urls,
        stages=[
            StageSpec("fetch", Fetch(), kind="source", max_parallelism=32),
            StageSpec("decode", decode),
            StageSpec("collate", concat_collate, kind="collate"),
        ],
        batch_size=p["batch"],
        samples_per_element=rec,
        description=(
            f"{n} shards of {rec} records over HTTP (latency {p['latency_ms']:.0f} ms, "
            f"{CONN_MBPS:.0f} MB/s per connection, {TOTAL_MBPS:.0f} MB/s total) → decode → batch"
        ),
        source=urls[0],
        max_workers=16,
        materialized_bytes={
            "fetch": n * rec * (dim + 1),
            "decode": n * rec * (dim * 4 + 8),
            "collate": n * rec * (dim * 4 + 8),
        },
    )
