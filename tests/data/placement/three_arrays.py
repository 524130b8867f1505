"""Three numpy arrays from three lines of one helper: one native site, three Python sites.

``three_arrays.py REPORT [--wait-bound]`` allocates and touches the arrays, then writes
REPORT (JSON): per array its data address, size and the numa_maps policy of the VMA that
holds its first whole page. ``--wait-bound``: first wait (up to 20 s) until arrays ``a``
and ``b`` are bound (``placer run --plan`` binds them from the Python runner).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

N = 1 << 17  # 1 MiB of float64 each: mmap'd by the allocator, each its own mapping


def make(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.zeros(n)  # array a
    b = np.zeros(n)  # array b
    c = np.zeros(n)  # array c
    return a, b, c


def policies(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, object]]:
    page = 4096
    ends = {}
    for line in open("/proc/self/maps").read().splitlines():
        lo, hi = line.split(None, 1)[0].split("-")
        ends[int(lo, 16)] = int(hi, 16)
    vmas = []
    for line in open("/proc/self/numa_maps").read().splitlines():
        start, policy = line.split()[:2]
        vmas.append((int(start, 16), ends.get(int(start, 16), 0), policy))
    out = {}
    for name, arr in arrays.items():
        addr = arr.__array_interface__["data"][0]
        first = -(-addr // page) * page
        policy = next((p for lo, hi, p in vmas if lo <= first < hi), "?")
        out[name] = {"addr": addr, "size": int(arr.nbytes), "policy": policy}
    return out


def main() -> None:
    arrays = dict(zip("abc", make(N), strict=True))  # call
    for arr in arrays.values():
        arr += 1.0  # touch every page
    if "--wait-bound" in sys.argv:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = policies(arrays)
            if all(got[k]["policy"].startswith("bind") for k in "ab"):
                break
            time.sleep(0.02)
    time.sleep(0.3)  # let the Python runner and placer's numa_maps sampler see the arrays
    with open(sys.argv[1], "w") as fh:
        json.dump(policies(arrays), fh)


main()
