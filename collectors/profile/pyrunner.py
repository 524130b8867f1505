"""Run a Python script like ``python script.py`` does, and name its big buffers.

``python -m collectors.profile.pyrunner --out FILE -- script.py ARGS`` (or ``-- -m mod``)
starts :mod:`tracemalloc`, runs the script as ``__main__`` with the same ``sys.argv``, and
on a timer and at exit walks the large buffers reachable from tracked containers (numpy
arrays owning their data, bytearrays, bytes, array.array), writing one JSON line per buffer
first seen: its data address, size, the CLOCK_MONOTONIC time it was seen and the Python
traceback that allocated it. Placer joins these to the shim's ALLOC records by address and
lifetime, so objects are named ``script.py:42`` instead of interpreter C frames.

Only the standard library is imported here; numpy is looked at only if the script did.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import runpy
import sys
import threading
import time
import tracemalloc
from typing import Any

_SKIP_FILES = (
    "runpy.py",
    "<frozen runpy>",
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
)


class Scanner:
    """Finds large buffers and records each one's address and allocating traceback."""

    def __init__(self, out_path: str, min_size: int, period_s: float) -> None:
        self.out_path = out_path
        self.min_size = min_size
        self.period_s = period_s
        self.seen: set[tuple[int, int]] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fh = open(out_path, "a", encoding="utf-8")  # noqa: SIM115 - lives until exit
        self.me = os.path.abspath(__file__)

    # -- buffers -------------------------------------------------------------------------
    def _buffer(self, obj: Any) -> tuple[int, int, Any] | None:
        """(address, size, object whose traceback names it) for buffers we understand."""
        np = sys.modules.get("numpy")
        if np is not None and isinstance(obj, np.ndarray):
            owner = obj
            while isinstance(owner.base, np.ndarray):
                owner = owner.base
            if owner.base is not None or owner.nbytes < self.min_size:
                return None  # views of foreign memory (mmap, buffers) are not heap objects
            return owner.__array_interface__["data"][0], int(owner.nbytes), owner
        if isinstance(obj, bytearray) and len(obj) >= self.min_size:
            buf = (ctypes.c_char * len(obj)).from_buffer(obj)
            addr = ctypes.addressof(buf)
            del buf
            return addr, len(obj), obj
        if isinstance(obj, bytes) and len(obj) >= self.min_size:
            return id(obj), len(obj), obj
        arr = sys.modules.get("array")
        if arr is not None and isinstance(obj, arr.array):
            addr, n = obj.buffer_info()
            size = n * obj.itemsize
            if size >= self.min_size:
                return addr, size, obj
        return None

    def _traceback(self, obj: Any) -> list[list[Any]]:
        tb = tracemalloc.get_object_traceback(obj)
        if tb is None:
            return []
        frames = []
        for fr in reversed(list(tb)):  # innermost first
            name = fr.filename
            if name == self.me or os.path.basename(name) in _SKIP_FILES or name in _SKIP_FILES:
                continue
            frames.append([name, fr.lineno])
        return frames

    @staticmethod
    def _collect(values: list[Any], out: dict[int, Any], depth: int) -> None:
        """Buffers among ``values`` and inside their containers, ``depth`` levels down.

        Needed because the collector untracks containers holding only untracked objects
        (a dict of numpy arrays, say), so gc.get_objects() never shows them.
        """
        seen: set[int] = set()
        level = values
        for _ in range(depth):
            nxt: list[Any] = []
            for obj in level:
                if id(obj) in seen:
                    continue
                seen.add(id(obj))
                if isinstance(obj, (bytes, bytearray)) or type(obj).__name__ in (
                    "ndarray",
                    "array",
                    "memmap",
                ):
                    out.setdefault(id(obj), obj)
                elif isinstance(obj, dict):
                    nxt.extend(obj.values())
                elif isinstance(obj, (list, tuple, set, frozenset)):
                    nxt.extend(obj)
            level = nxt
            if not level:
                break

    def scan(self, full: bool = True) -> None:
        """Look at every thread's stack, and (``full``) at all the collector tracks."""
        with self.lock:
            if self.fh.closed:
                return
            now = time.monotonic_ns()
            candidates: dict[int, Any] = {}
            if full:
                tracked = gc.get_objects()
                step = 4096
                for i in range(0, len(tracked), step):
                    self._collect(gc.get_referents(*tracked[i : i + step]), candidates, 2)
                del tracked
            # locals of running functions live in interpreter frames the collector does not
            # track: look at every thread's stack too
            me = threading.get_ident()
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                f: Any = frame
                while f is not None:
                    try:
                        values = list(f.f_locals.values())
                    except Exception:  # noqa: BLE001 - a frame being torn down
                        values = []
                    self._collect(values, candidates, depth=3)
                    f = f.f_back
                del frame, f
            for obj in candidates.values():
                try:
                    found = self._buffer(obj)
                except Exception:  # noqa: BLE001 - a strange object must not kill the program
                    continue
                if found is None:
                    continue
                addr, size, owner = found
                if (addr, size) in self.seen:
                    continue
                self.seen.add((addr, size))
                rec = {
                    "t": now,
                    "addr": addr,
                    "size": size,
                    "type": type(owner).__name__,
                    "tb": self._traceback(owner),
                }
                self.fh.write(json.dumps(rec) + "\n")
            self.fh.flush()

    def run(self) -> None:
        """Stacks every period (cheap); the whole heap as often as ~5% of the time allows."""
        next_full = 0.0
        while not self.stop.wait(self.period_s):
            started = time.monotonic()
            full = started >= next_full
            self.scan(full)
            cost = time.monotonic() - started
            if full:
                next_full = started + cost * 20

    def close(self) -> None:
        self.stop.set()
        try:
            self.scan()
        finally:
            with self.lock:
                if not self.fh.closed:
                    self.fh.close()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, min_size, period_ms, depth = None, 64 * 1024, 200, 6  # deeper costs start-up time
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt in ("--out", "--min-size", "--period-ms", "--depth") and argv:
            val = argv.pop(0)
            if opt == "--out":
                out = val
            elif opt == "--min-size":
                min_size = int(val)
            elif opt == "--period-ms":
                period_ms = int(val)
            else:
                depth = int(val)
        else:
            sys.exit(f"pyrunner: unknown option {opt}")
    if not argv or argv[0] != "--" or len(argv) < 2 or out is None:
        sys.exit("usage: python -m collectors.profile.pyrunner --out FILE -- script.py [ARGS]")
    target = argv[1:]
    injected = os.environ.pop("PLACER_PYRUNNER_PATH", None)
    if injected:
        sys.path[:] = [p for p in sys.path if os.path.abspath(p) != os.path.abspath(injected)]
        pp = [
            p
            for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
            if p and os.path.abspath(p) != os.path.abspath(injected)
        ]
        if pp:
            os.environ["PYTHONPATH"] = os.pathsep.join(pp)
        else:
            os.environ.pop("PYTHONPATH", None)
    tracemalloc.start(depth)
    scanner = Scanner(out, min_size, period_ms / 1000.0)
    atexit.register(scanner.close)
    thread = threading.Thread(target=scanner.run, name="placer-pyrunner", daemon=True)
    thread.start()
    main_globals: dict[str, Any] = {}  # keeps the script's globals alive for the last scan
    try:
        if target[0] == "-m":
            if len(target) < 2:
                sys.exit("pyrunner: -m needs a module name")
            sys.argv = [target[1], *target[2:]]
            main_globals = runpy.run_module(target[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = list(target)
            sys.path[0] = os.path.dirname(os.path.abspath(target[0]))
            main_globals = runpy.run_path(target[0], run_name="__main__")
    finally:
        scanner.close()
        main_globals.clear()


if __name__ == "__main__":
    main()
