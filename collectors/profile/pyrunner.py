"""Run a Python script like ``python script.py`` does, and name its big buffers.

``python -m placer.collectors.profile.pyrunner --out FILE -- script.py ARGS`` (or ``-- -m mod``)
starts :mod:`tracemalloc`, runs the script as ``__main__`` with the same ``sys.argv``, and
on a timer and at exit walks the large buffers reachable from tracked containers (numpy
arrays owning their data, bytearrays, bytes, array.array), writing one JSON line per buffer
first seen: its data address, size, the CLOCK_MONOTONIC time it was seen and the Python
traceback that allocated it. Placer joins these to the shim's ALLOC records by address and
lifetime, so objects are named ``script.py:42`` instead of interpreter C frames.

``--bind MAP --bind-report FILE`` (``placer run --plan`` on a Python script): each buffer
first seen whose Python site (:func:`~placer.collectors.profile.pysites.python_site_hash`) the
plan's MAP names is ``mbind``-ed (MPOL_BIND, MPOL_MF_MOVE: touched pages move) to its node,
whole or per chunk, and one JSON line per bind is written to FILE. Buffers are looked for
as soon as the traced memory grows by ``--min-size``, so a bind follows its allocation by
a few milliseconds; Python objects sharing one native allocation site (numpy's) are so
placed one by one.

Only the standard library is imported here; numpy is looked at only if the script did.
"""

from __future__ import annotations

import atexit
import ctypes
import gc
import json
import os
import platform
import runpy
import sys
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

from placer.collectors.profile.pysites import python_site_hash, user_python_frames

_SKIP_FILES = (
    "runpy.py",
    "<frozen runpy>",
    "<frozen importlib._bootstrap>",
    "<frozen importlib._bootstrap_external>",
)


_SYS_MBIND = {"x86_64": 237, "aarch64": 235, "ppc64le": 259, "s390x": 268}
_MPOL_BIND = 2
_MPOL_MF_MOVE = 2
_MAX_NODES = 1024


def mbind(lo: int, hi: int, node: int) -> int:
    """Bind the pages [lo, hi) to ``node`` (moving touched ones); 0 or the errno."""
    if hi <= lo:
        return 22  # EINVAL, as the shim reports an empty range
    nr = _SYS_MBIND.get(platform.machine())
    if nr is None:
        return 38  # ENOSYS: no syscall number known for this machine
    bits = 8 * ctypes.sizeof(ctypes.c_ulong)
    mask = (ctypes.c_ulong * (_MAX_NODES // bits))()
    mask[node // bits] |= 1 << (node % bits)
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(
        ctypes.c_long(nr),
        ctypes.c_void_p(lo),
        ctypes.c_ulong(hi - lo),
        ctypes.c_int(_MPOL_BIND),
        mask,
        ctypes.c_ulong(_MAX_NODES),
        ctypes.c_uint(_MPOL_MF_MOVE),
    )
    return 0 if r == 0 else ctypes.get_errno()


class Binder:
    """Binds buffers of planned Python sites to their nodes; one report line per bind."""

    def __init__(self, plan: dict[str, Any], report_path: str) -> None:
        self.sites: dict[str, Any] = dict(plan.get("sites") or {})
        self.chunk_bytes = int(plan.get("chunk_bytes") or 0)
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.fh = open(report_path, "a", encoding="utf-8")  # noqa: SIM115 - lives until exit

    def ranges(self, addr: int, size: int, planned: Any) -> list[tuple[int, int, int, int | None]]:
        """(lo, hi, node, chunk) page ranges, as the shim cuts them (whole pages inside)."""
        page = self.page
        end_page = (addr + size) // page * page
        if not isinstance(planned, dict):
            return [(-(-addr // page) * page, end_page, int(planned), None)]
        out: list[tuple[int, int, int, int | None]] = []
        for chunk, node in sorted(((int(c), int(n)) for c, n in planned.items())):
            off = chunk * self.chunk_bytes
            if off >= size:
                continue  # this buffer has no such chunk
            off_end = min(size, off + self.chunk_bytes)
            lo = -(-(addr + off) // page) * page
            hi = min(-(-(addr + off_end) // page) * page, end_page)
            out.append((lo, hi, node, chunk))
        return out

    def bind(self, site: str, addr: int, size: int) -> None:
        planned = self.sites.get(site)
        if planned is None:
            return  # unplanned: the default policy
        for lo, hi, node, chunk in self.ranges(addr, size, planned):
            err = mbind(lo, hi, node)
            rec = {
                "t": time.monotonic_ns(),
                "site": site,
                "addr": addr,
                "size": size,
                "node": node,
                "chunk": chunk,
                "lo": lo,
                "hi": hi,
                "errno": err,
                "ok": err == 0,
            }
            self.fh.write(json.dumps(rec) + "\n")
        self.fh.flush()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()


class Scanner:
    """Finds large buffers and records each one's address and allocating traceback."""

    def __init__(
        self, out_path: str | None, min_size: int, period_s: float, binder: Binder | None = None
    ) -> None:
        self.min_size = min_size
        self.period_s = period_s
        # (address, size) → the owner (weakly, where it allows) it was first seen with: a new
        # buffer at a freed one's address is another buffer
        self.seen: dict[tuple[int, int], Callable[[], Any] | None] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.fh = (
            open(out_path, "a", encoding="utf-8")  # noqa: SIM115 - lives until exit
            if out_path
            else None
        )
        self.binder = binder
        self.closed = False
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
            if self.closed:
                return
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
            # the sighting's time is read after the walk: every buffer found was allocated
            # before it, and ``candidates`` keeps it alive until after it, so the shim's
            # ALLOC record is live at ``now`` (read before the walk, a buffer the script
            # allocated during the walk would be stamped before its own allocation)
            now = time.monotonic_ns()
            for obj in candidates.values():
                try:
                    found = self._buffer(obj)
                except Exception:  # noqa: BLE001 - a strange object must not kill the program
                    continue
                if found is None:
                    continue
                addr, size, owner = found
                if not self._is_new(addr, size, owner):
                    continue
                tb = self._traceback(owner)
                if self.fh is not None:
                    rec = {"t": now, "addr": addr, "size": size, "type": type(owner).__name__}
                    self.fh.write(json.dumps({**rec, "tb": tb}) + "\n")
                if self.binder is not None:
                    chain = user_python_frames(tb)
                    if chain:
                        self.binder.bind(python_site_hash(chain), addr, size)
            if self.fh is not None:
                self.fh.flush()

    def _is_new(self, addr: int, size: int, owner: Any) -> bool:
        """First sighting of this buffer (not of a freed one that had its address)."""
        key = (addr, size)
        if key in self.seen:
            ref = self.seen[key]
            if ref is None or ref() is owner:
                return False
        try:
            self.seen[key] = weakref.ref(owner)
        except TypeError:  # bytes, bytearray: no weak references
            self.seen[key] = None
        return True

    def run(self) -> None:
        """Stacks every period (cheap); the whole heap as often as ~5% of the time allows.

        When binding, the stacks are also looked at as soon as the traced memory grew by
        ``min_size`` (checked every few milliseconds), so a planned buffer is bound soon
        after its allocation, mostly before the program touches it.
        """
        next_full = 0.0
        poll_s = min(0.005, self.period_s) if self.binder is not None else self.period_s
        next_scan = time.monotonic() + self.period_s
        level = tracemalloc.get_traced_memory()[0]
        while not self.stop.wait(poll_s):
            started = time.monotonic()
            if self.binder is not None and started < next_scan:
                now_level = tracemalloc.get_traced_memory()[0]
                grown = now_level - level >= self.min_size
                level = min(level, now_level)
                if not grown:
                    continue
                self.scan(full=False)
                level = tracemalloc.get_traced_memory()[0]
                continue
            full = started >= next_full
            self.scan(full)
            level = tracemalloc.get_traced_memory()[0]
            cost = time.monotonic() - started
            next_scan = time.monotonic() + self.period_s
            if full:
                next_full = started + cost * 20

    def close(self) -> None:
        self.stop.set()
        try:
            self.scan()
        finally:
            with self.lock:
                self.closed = True
                if self.fh is not None and not self.fh.closed:
                    self.fh.close()
                if self.binder is not None:
                    self.binder.close()


def command(
    interpreter: str,
    script: list[str],
    env: dict[str, str],
    *,
    options: list[str],
) -> list[str]:
    """``interpreter -m placer.collectors.profile.pyrunner OPTIONS -- script...``; sets ``env`` so
    the runner is importable and then leaves the script's own ``sys.path`` as it was."""
    root = str(Path(__file__).resolve().parent.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PLACER_PYRUNNER_PATH"] = root
    return [interpreter, "-m", "placer.collectors.profile.pyrunner", *options, "--", *script]


_USAGE = (
    "usage: python -m placer.collectors.profile.pyrunner [--out FILE] "
    "[--bind MAP --bind-report FILE] -- script.py [ARGS]"
)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, min_size, period_ms, depth = None, 64 * 1024, 200, 6  # deeper costs start-up time
    bind_map = bind_report = None
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt in ("--out", "--min-size", "--period-ms", "--depth", "--bind", "--bind-report"):
            if not argv:
                sys.exit(f"pyrunner: {opt} needs a value")
            val = argv.pop(0)
            if opt == "--out":
                out = val
            elif opt == "--bind":
                bind_map = val
            elif opt == "--bind-report":
                bind_report = val
            elif opt == "--min-size":
                min_size = int(val)
            elif opt == "--period-ms":
                period_ms = int(val)
            else:
                depth = int(val)
        else:
            sys.exit(f"pyrunner: unknown option {opt}")
    if not argv or argv[0] != "--" or len(argv) < 2 or (out is None and bind_map is None):
        sys.exit(_USAGE)
    if (bind_map is None) != (bind_report is None):
        sys.exit("pyrunner: --bind and --bind-report go together")
    binder = None
    if bind_map is not None and bind_report is not None:
        with open(bind_map, encoding="utf-8") as fh:
            binder = Binder(json.load(fh), bind_report)
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
    scanner = Scanner(out, min_size, period_ms / 1000.0, binder)
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
