"""The shim library: where it is (built when missing or stale) and how to preload it.

Not in the package's ``__init__``: ``python -m placer.collectors.shim.build`` runs the build
module as a script, which the package must not have imported already.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from placer.collectors.shim import build
from placer.errors import ExternalToolError

__all__ = ["ENV_VARS", "shim_env", "shim_path"]

#: Every environment variable the shim reads (docs/shim.md).
ENV_VARS = (
    "PLACER_SHIM_LOG",
    "PLACER_SHIM_THRESHOLD",
    "PLACER_SHIM_STACK_DEPTH",
    "PLACER_SHIM_BUFFER",
    "PLACER_SHIM_SAMPLE_PERIOD_MS",
    "PLACER_SHIM_SAMPLE_MIN_SIZE",
    "PLACER_SHIM_SAMPLE_PAGES",
    "PLACER_SHIM_SAMPLE_MAX_PAGES",
    "PLACER_SHIM_SAMPLE_BUDGET",
    "PLACER_SHIM_MAX_OBJECTS",
    "PLACER_SHIM_PLAN",
    "PLACER_SHIM_DEBUG",
)

_lock = threading.Lock()
_resolved: dict[str, Path] = {}


def shim_path() -> Path:
    """The shim library to put in ``LD_PRELOAD``, built first if missing or stale.

    The library installed with the package is used when it was built from the C sources
    that sit next to it; otherwise (an editable install after the source changed, a
    wheel built without a compiler) the shim is compiled into the user's cache under its
    source hash. Raises :class:`placer.errors.ExternalToolError` when it has to be built
    and no C compiler is found or the build fails.
    """
    source_dir = build.SOURCE_DIR

    with _lock:
        have_source = build.has_sources(source_dir)
        digest = build.source_hash(source_dir) if have_source else ""
        cached = _resolved.get(digest)
        if cached is not None and cached.exists():
            return cached
        packaged = source_dir / build.LIBRARY_NAME
        if packaged.exists() and (not have_source or build.embedded_hash(packaged) == digest):
            _resolved[digest] = packaged
            return packaged
        if not have_source:
            raise ExternalToolError(
                f"the allocation shim is not installed ({packaged} missing) and its C sources "
                f"({source_dir}) are not there to build it; reinstall placer"
            )
        target = build.cache_dir() / digest[:20] / build.LIBRARY_NAME
        if not (target.exists() and build.embedded_hash(target) == digest):
            build.compile_shim(target, source_dir)
        _resolved[digest] = target
        return target


def shim_env(
    log_pattern: str | os.PathLike[str], *, inherit_preload: bool = True, **settings: object
) -> dict[str, str]:
    """Environment variables that preload the shim and log to ``log_pattern``.

    ``settings`` are the remaining variables without their prefix, e.g.
    ``shim_env("/tmp/x.%p.log", sample_period_ms=0, threshold=1 << 20)``. Returns only the
    shim's variables (``LD_PRELOAD`` included: the shim first, then any LD_PRELOAD already
    in the environment unless ``inherit_preload`` is False, as for an environment written
    for another process); merge them into a copy of ``os.environ``.
    """
    env = {"PLACER_SHIM_LOG": str(log_pattern)}
    for key, value in settings.items():
        name = f"PLACER_SHIM_{key.upper()}"
        if name not in ENV_VARS:
            raise TypeError(f"unknown shim setting {key!r}")
        env[name] = str(value)
    preload = str(shim_path().resolve())
    if inherit_preload and os.environ.get("LD_PRELOAD"):
        preload += " " + os.environ["LD_PRELOAD"]
    env["LD_PRELOAD"] = preload
    return env
