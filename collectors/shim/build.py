"""Build the preloaded shim (``libplacer_shim.so``) from its C sources (:data:`SOURCES`).

Used three ways:

- by the package build (``setup.py``), which puts the library next to this file;
- by :func:`placer.collectors.shim.library.shim_path` when that library is missing or
  stale (an editable install whose C sources changed): it compiles into a per-user cache
  keyed by the source hash;
- by hand: ``python -m placer.collectors.shim.build [-o OUT]`` (what ``make shim`` runs).

The sources are one C file per concern and the header they share, all in this package's
folder; the hash covers every one of them. A build embeds
``PLACER_SHIM_SOURCE_SHA256=<hash>;`` in the library, so staleness is a byte search, never
a ``dlopen`` (loading the shim into Python would be pointless).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from placer.errors import ExternalToolError

#: Where the shim's sources are (and where the package build puts the library).
SOURCE_DIR = Path(__file__).parent
#: The header every C file includes (docs/shim.md; its top comment holds the lock order).
HEADERS = ("shim_internal.h",)
#: The C files compiled together into the library, one concern each.
SOURCES = (
    "shim_init.c",
    "shim_log.c",
    "shim_sites.c",
    "shim_binding.c",
    "shim_objects.c",
    "shim_sampling.c",
    "shim_signals.c",
    "shim_wrappers.c",
    "shim_io.c",
    "shim_kcalls.c",
)
LIBRARY_NAME = "libplacer_shim.so"
CFLAGS = (
    "-O2",
    "-g",
    "-fPIC",
    "-shared",
    "-pthread",
    "-fvisibility=hidden",
    "-fexceptions",
    "-fno-strict-aliasing",
    "-U_FORTIFY_SOURCE",
    "-Wall",
    "-Wl,-z,nodelete",
)
LIBS = ("-ldl",)
MARKER = b"PLACER_SHIM_SOURCE_SHA256="
CACHE_ENV = "PLACER_CACHE_DIR"


def source_files(source_dir: Path | None = None) -> list[Path]:
    """The header(s) and C files of the shim in ``source_dir`` (default: this package)."""
    source_dir = SOURCE_DIR if source_dir is None else Path(source_dir)
    return [source_dir / name for name in HEADERS + SOURCES]


def has_sources(source_dir: Path | None = None) -> bool:
    """Whether every source file of the shim is in ``source_dir``."""
    return all(path.exists() for path in source_files(source_dir))


def source_hash(source_dir: Path | None = None) -> str:
    """SHA-256 of the C sources (names and bytes) and of the flags they are built with."""
    h = hashlib.sha256()
    for path in source_files(source_dir):
        h.update(path.name.encode() + b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    h.update(" ".join(CFLAGS + LIBS).encode())
    return h.hexdigest()


def embedded_hash(library: Path) -> str | None:
    """The source hash a built library carries, or None (not ours, unreadable)."""
    try:
        data = library.read_bytes()
    except OSError:
        return None
    i = data.find(MARKER)
    if i < 0:
        return None
    j = data.find(b";", i)
    if j < 0:
        return None
    return data[i + len(MARKER) : j].decode("ascii", "replace")


def find_compiler() -> str:
    """``$CC``, else cc, gcc or clang on PATH; ExternalToolError when there is none."""
    env_cc = os.environ.get("CC")
    candidates = [env_cc] if env_cc else []
    candidates += ["cc", "gcc", "clang"]
    for cc in candidates:
        path = shutil.which(cc.split()[0]) if cc else None
        if path:
            return path
    raise ExternalToolError(
        "no C compiler found (tried $CC, cc, gcc, clang): the allocation shim cannot be "
        "built; install one (Debian/Ubuntu: apt-get install gcc)"
    )


def compile_shim(output: Path, source_dir: Path | None = None, cc: str | None = None) -> Path:
    """Compile the sources in ``source_dir`` into ``output`` atomically (a temporary file,
    then a rename)."""
    files = source_files(source_dir)
    for path in files:
        if not path.exists():
            raise ExternalToolError(f"the shim's C source is missing: {path}")
    compiler = cc or find_compiler()
    digest = source_hash(source_dir)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".shim-", suffix=".so", dir=output.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    cmd = [
        compiler,
        *CFLAGS,
        f'-DPLACER_SHIM_SOURCE_HASH="{digest}"',
        "-o",
        str(tmp),
        *(str(path) for path in files if path.suffix == ".c"),
        *LIBS,
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        tmp.unlink(missing_ok=True)
        raise ExternalToolError(f"cannot run the C compiler {compiler}: {exc}") from None
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip().splitlines()[-20:]
        raise ExternalToolError(
            f"building the allocation shim failed ({' '.join(cmd)}):\n" + "\n".join(detail)
        )
    tmp.chmod(0o755)
    os.replace(tmp, output)
    return output


def cache_dir() -> Path:
    """Per-user cache for shims built on demand (``$PLACER_CACHE_DIR`` overrides)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser() / "shim"
    # lazy: setup.py imports this module in the isolated build environment, which has
    # setuptools only (platformdirs is a run-time dependency)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("placer", appauthor=False)) / "shim"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m placer.collectors.shim.build",
        description="Build the placer allocation shim.",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="where to write the library (default: next to the C sources)",
    )
    args = parser.parse_args(argv)
    try:
        out = compile_shim(args.output or SOURCE_DIR / LIBRARY_NAME)
    except ExternalToolError as exc:
        print(f"placer: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
