"""Names of objects for people: the first *user* frame of an allocation site's call chain.

A C++ object is allocated by ``operator new`` (in libstdc++) through allocator and
container frames inlined from system headers; naming it after any of those says nothing
(every vector would be ``libstdc++.so.6+0xa958c``). As heaptrack and memray do, the name is
the first frame that is the program's own code: not a runtime library's address, not a
system or compiler header, not the C library's start-up code. Every table, plan, report
and emulator result names objects through :func:`object_name` / :func:`site_label`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

#: Frames given as ``module+0xOFFSET`` (no debug info) in these libraries are runtime code.
_RUNTIME_MODULE = re.compile(
    r"^(libstdc\+\+|libc\.so|libc-|libgcc_s|libm\.so|libpthread|libgomp|libjemalloc|"
    r"libtcmalloc|libmimalloc|libplacer_shim|ld-linux|ld-\d|libpython\d|libnuma|libdl)"
)
#: Source paths of system, compiler and C library code (headers are inlined into callers).
_SYSTEM_PATH = re.compile(
    r"^(/usr/include/|/usr/lib/gcc/|/usr/lib/llvm|/usr/local/include/c\+\+/|"
    r"\./|/build/glibc|/usr/src/debug/glibc|.*/include/c\+\+/\d)"
)


def is_user_frame(frame: str) -> bool:
    """Whether ``frame`` (``file:line`` or ``module+0xOFF``) is the program's own code."""
    if "+0x" in frame and ":" not in frame:
        return not _RUNTIME_MODULE.match(os.path.basename(frame))
    return not _SYSTEM_PATH.match(frame)


def user_frames(chain: Sequence[str]) -> list[str]:
    """The chain without runtime and system frames; the whole chain if nothing is left."""
    kept = [f for f in chain if is_user_frame(f)]
    return kept or list(chain)


def short_frame(frame: str) -> str:
    """``/long/path/pr.cc:42`` → ``pr.cc:42`` for tables."""
    if "+0x" in frame and ":" not in frame:
        return frame
    return os.path.basename(frame)


def object_name(chain: Sequence[str], fallback: str = "") -> str:
    """The object's name: its first user frame, short (``app.cc:7``), else ``fallback``."""
    frames = user_frames(chain)
    return short_frame(frames[0]) if frames else fallback


def site_label(chain: Sequence[str], frames: int = 3) -> str:
    """Up to ``frames`` user frames, innermost first: ``app.cc:5 ← app.cc:7``."""
    return " ← ".join(short_frame(f) for f in user_frames(chain)[:frames]) or "?"
