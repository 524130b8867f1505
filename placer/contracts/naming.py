"""Names of objects for people: the first *user* frame of an allocation site's call chain.

A C++ object is allocated by ``operator new`` (in libstdc++) through allocator and
container frames inlined from system headers; naming it after any of those says nothing
(every vector would be ``libstdc++.so.6+0xa958c``). As heaptrack and memray do, the name is
the first frame that is the program's own code: not a runtime library's address, not a
system or compiler header, not the C library's start-up code. Every table, plan, report
and emulator result names objects through :func:`object_name` / :func:`site_label`.

Programs with their own allocation wrapper (``xmalloc``, ``g_malloc``, redis's
``zmalloc``, sqlite's ``sqlite3MemMalloc``, jq's ``jv_mem_alloc``) would otherwise name
every object after the one line inside the wrapper, so the leading frames of a chain that
are allocator plumbing are skipped to the wrapper's caller:

- a frame whose *function* (``Site.functions``, parallel to the frames) matches
  :data:`_WRAPPER_FUNCTION`, a documented list of allocator wrapper names; a function
  merely *called* ``graph_alloc`` or ``node_new`` is not in it (it makes one kind of
  object, and its line is a good name);
- a stripped shared library's ``lib.so+0xOFF`` frame (no debug info, not the program);
- by structure, within one run (:func:`wrapper_frames`): a frame that calls the allocator
  directly and is the first user frame of sites reached from at least
  :data:`MIN_WRAPPER_CALLERS` different callers. This finds wrappers by any name, and
  works on sites stored without function names.

Only *leading* frames are skipped: a wrapper name after the first user frame is kept.
When everything would be skipped the first user frame is the name, as before.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

#: Frames given as ``module+0xOFFSET`` (no debug info) in these libraries are runtime code.
#: Matched on the frame's basename: ``libstdc++.so.6+0x..`` and a bare ``libstdc+++0x..``.
_RUNTIME_MODULE = re.compile(
    r"^(libstdc\+\+|libc\+\+|libc\+\+abi|libc\.so|libc-|libgcc_s|libm\.so|libpthread|libgomp|"
    r"libjemalloc|libtcmalloc|libmimalloc|libplacer_shim|ld-linux|ld-\d|libpython\d|libnuma|"
    r"libdl)"
)
#: Source paths of system, compiler and C library code (headers are inlined into callers).
_SYSTEM_PATH = re.compile(
    r"^(/usr/include/|/usr/lib/gcc/|/usr/lib/llvm|/usr/local/include/c\+\+/|"
    r"\./|/build/glibc|/usr/src/debug/glibc|.*/include/c\+\+/\d)"
)
#: A ``module+0xOFF`` frame in a shared library (``libfoo.so``, ``libfoo.so.1.2``).
_SHARED_LIBRARY = re.compile(r"\.so(\.\d+)*\+0x[0-9a-fA-F]+$")

#: Allocation wrapper functions, matched against the bare function name (no namespace,
#: template arguments or parameters). Each line is one family:
_WRAPPER_FUNCTION = re.compile(
    r"""
    # gnulib xalloc.h (GNU tools), PHP e*, redis z*/ztry*, and common "safe_"/"my_" wrappers
    (?:x|xi|xn|x2n?|e|z|ztry|try_?|safe_?|checked_?|my_?|must_?)
        (?:malloc|calloc|realloc|zalloc|reallocarray|charalloc|memdup0?|strn?dup)(?:_\w+)?
    # anything_malloc / _calloc / _realloc / _mallocz: g_malloc0, g_try_malloc_n, av_mallocz,
    # CRYPTO_zalloc, PyMem_Malloc, PyObject_Realloc, tor_malloc_zero, sqlite3_malloc64
    # (not libstdc++'s own members: vector's _M_realloc_insert grows one container)
    | (?!_M_)\w+_(?:[Mm]alloc|[Cc]alloc|[Rr]ealloc|zalloc|[Mm]allocz?)(?:0|64)?(?:_\w+)?
    # glib's other copies, jq, sqlite's layers, Lua, Ruby, CPython internals
    | g_(?:strn?dup|memdup2?|slice_alloc0?|slice_copy)
    | jv_mem_\w+
    | sqlite3(?:Mem|Db)?(?:Malloc|Realloc|StrN?Dup)\w* | dbMallocRawFinish | dbReallocFinish
    | mallocWithAlarm
    | luaM_\w+ | l_alloc | ruby_x\w+
    | pymalloc_alloc | _?PyMem_\w+ | _?PyObject_(?:Malloc|Calloc|Realloc)
    # C++ allocation functions when libstdc++/libc++ has debug info
    | operator\ new(?:\[\])?
    """,
    re.VERBOSE,
)
#: Callers a directly-allocating function needs, within one run, to count as a wrapper.
MIN_WRAPPER_CALLERS = 3

_TEMPLATE_ARGS = re.compile(r"<[^<>]*>")


def bare_function(function: str) -> str:
    """``ns::Pool<int>::grow(unsigned long) const`` → ``grow``; ``operator new[](..)`` kept."""
    name = function.strip()
    for _ in range(8):
        stripped = _TEMPLATE_ARGS.sub("", name)
        if stripped == name:
            break
        name = stripped
    if name.startswith("operator new") or "::operator new" in name:
        return "operator new[]" if "new[]" in name else "operator new"
    name = name.split("(", 1)[0]
    return name.rsplit("::", 1)[-1].strip()


def is_wrapper_function(function: str) -> bool:
    """Whether ``function`` is a known allocation wrapper (``xmalloc``, ``g_malloc0``...)."""
    return bool(function) and bool(_WRAPPER_FUNCTION.fullmatch(bare_function(function)))


def _is_module(frame: str) -> bool:
    return "+0x" in frame and ":" not in frame


def is_user_frame(frame: str) -> bool:
    """Whether ``frame`` (``file:line`` or ``module+0xOFF``) is the program's own code."""
    if _is_module(frame):
        return not _RUNTIME_MODULE.match(os.path.basename(frame))
    return not _SYSTEM_PATH.match(frame)


def _plumbing(frame: str, function: str, wrappers: Collection[str]) -> bool:
    """Whether a user frame, while still before the first real user frame, is allocator code."""
    if frame in wrappers or is_wrapper_function(function):
        return True
    return _is_module(frame) and bool(_SHARED_LIBRARY.search(os.path.basename(frame)))


def _first_user(
    chain: Sequence[str], functions: Sequence[str], wrappers: Collection[str]
) -> tuple[int, bool]:
    """Index of the first user frame past the allocator plumbing (-1: none), and whether
    the frames before it are only runtime modules and plumbing (it allocates directly)."""
    direct = True
    for i, frame in enumerate(chain):
        if not is_user_frame(frame):
            direct = direct and _is_module(frame)
            continue
        if _plumbing(frame, functions[i] if i < len(functions) else "", wrappers):
            continue
        return i, direct
    return -1, direct


def user_frames(
    chain: Sequence[str],
    functions: Sequence[str] = (),
    wrappers: Collection[str] = frozenset(),
) -> list[str]:
    """The chain without runtime, system and leading allocator frames.

    ``functions`` (parallel to ``chain``, may be shorter or empty) names each frame's
    function; ``wrappers`` are frames found to be wrappers by :func:`wrapper_frames`.
    Falls back to all user frames, then to the whole chain, rather than to nothing.
    """
    kept = [f for f in chain if is_user_frame(f)]
    start, _ = _first_user(chain, functions, wrappers)
    if start < 0:
        return kept or list(chain)
    return [f for f in chain[start:] if is_user_frame(f)]


def wrapper_frames(
    sites: Iterable[tuple[Sequence[str], Sequence[str]]],
    min_callers: int = MIN_WRAPPER_CALLERS,
) -> frozenset[str]:
    """Frames that are allocation wrappers by structure, from one run's sites.

    ``sites`` holds each site's (chain, functions). A frame is a wrapper when it calls the
    allocator directly (only runtime modules and known wrappers before it, no container
    code) and is the first user frame of sites with ``min_callers`` different next user
    frames. One level only: a function calling a wrapper from many places is not one.
    """
    callers: dict[str, set[str]] = defaultdict(set)
    for chain, functions in sites:
        i, direct = _first_user(chain, functions, ())
        if i < 0 or not direct:
            continue
        caller = next((f for f in chain[i + 1 :] if is_user_frame(f)), None)
        if caller is not None:
            callers[chain[i]].add(caller)
    return frozenset(f for f, seen in callers.items() if len(seen) >= min_callers)


def site_chain(site: Any) -> tuple[list[str], list[str]]:
    """A stored site's (``file:line`` chain, function per frame); ``[]`` functions when
    the site was stored without them."""
    chain = [str(f) for f in (getattr(site, "symbolized", None) or [])]
    functions = [str(f or "") for f in (getattr(site, "functions", None) or [])]
    return chain, functions


def short_frame(frame: str) -> str:
    """``/long/path/pr.cc:42`` → ``pr.cc:42`` for tables."""
    if _is_module(frame):
        return frame
    return os.path.basename(frame)


def object_name(
    chain: Sequence[str],
    fallback: str = "",
    functions: Sequence[str] = (),
    wrappers: Collection[str] = frozenset(),
) -> str:
    """The object's name: its first user frame, short (``app.cc:7``), else ``fallback``."""
    frames = user_frames(chain, functions, wrappers)
    return short_frame(frames[0]) if frames else fallback


def site_label(
    chain: Sequence[str],
    frames: int = 3,
    functions: Sequence[str] = (),
    wrappers: Collection[str] = frozenset(),
) -> str:
    """Up to ``frames`` user frames, innermost first: ``app.cc:5 ← app.cc:7``."""
    kept = user_frames(chain, functions, wrappers)[:frames]
    return " ← ".join(short_frame(f) for f in kept) or "?"
