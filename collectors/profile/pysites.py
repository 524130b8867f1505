"""Python call sites: the ``py-`` hash of a buffer's allocating traceback.

Standard library only: :mod:`.pyrunner` imports it inside the profiled (or planned) program,
where profiling names buffers and ``placer run --plan`` binds them by the same hash that
:mod:`.ingest` stored.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

_LIB_MARKERS = (
    f"{os.sep}site-packages{os.sep}",
    f"{os.sep}dist-packages{os.sep}",
    f"{os.sep}lib{os.sep}python3",
    "<frozen ",
)


def python_site_hash(chain: Sequence[tuple[str, int]]) -> str:
    """``py-`` + sha1 of the ``basename:line`` chain (innermost first)."""
    text = "|".join(f"{os.path.basename(f)}:{line}" for f, line in chain)
    return "py-" + hashlib.sha1(text.encode()).hexdigest()


def user_python_frames(tb: Sequence[Sequence[Any]]) -> list[tuple[str, int]]:
    """Innermost-first frames with leading library frames (numpy internals…) dropped."""
    frames = [(str(f), int(line)) for f, line in tb]
    i = 0
    while i < len(frames) - 1 and any(m in frames[i][0] for m in _LIB_MARKERS):
        i += 1
    return frames[i:]
