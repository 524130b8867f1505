"""Finding and (re)building the shim library."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import placer.collectors.shim.library as shim_pkg
from placer.collectors.shim import build
from placer.collectors.shim.library import shim_env, shim_path
from placer.errors import ExternalToolError

needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (cc)")


@pytest.fixture
def private_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A changed copy of the C sources, and an empty cache: shim_path() must build."""
    src = tmp_path / "src"
    src.mkdir()
    for path in build.source_files():
        shutil.copyfile(path, src / path.name)
    changed = src / build.SOURCES[0]
    changed.write_text(changed.read_text() + f"\n/* changed for {tmp_path.name} */\n")
    monkeypatch.setattr(build, "SOURCE_DIR", src)
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(shim_pkg, "_resolved", {})
    return src


@needs_cc
def test_shim_path_is_fresh() -> None:
    path = shim_path()
    assert path.is_file() and path.name == build.LIBRARY_NAME
    assert build.embedded_hash(path) == build.source_hash()
    assert shim_path() == path


@needs_cc
def test_stale_source_is_rebuilt_into_the_cache(private_source: Path, tmp_path: Path) -> None:
    path = shim_path()
    assert path.is_relative_to(tmp_path / "cache")
    assert build.embedded_hash(path) == build.source_hash(private_source)
    mtime = path.stat().st_mtime_ns
    shim_pkg._resolved.clear()
    assert shim_path() == path and path.stat().st_mtime_ns == mtime  # cached, not rebuilt
    out = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True)
    if out.returncode == 0:
        exported = {ln.split()[-1] for ln in out.stdout.splitlines()}
        assert {"malloc", "free", "mmap", "munmap", "read", "sigaction"} <= exported
        assert "track" not in exported  # internals stay hidden


#: What the library exports: the wrapped functions and nothing else (each C file's shared
#: internals are hidden; a new export is a new wrapper, and belongs on this list).
EXPORTS = set(
    """
    _Exit __fread_chk __fread_unlocked_chk __fxstat __fxstat64 __fxstatat __fxstatat64
    __getcwd_chk __lxstat __lxstat64 __poll_chk __ppoll_chk __pread64_chk __pread_chk
    __read_chk __readlink_chk __readlinkat_chk __recv_chk __recvfrom_chk __sysv_signal
    __xstat __xstat64 _exit accept accept4 access aligned_alloc bind bsd_signal calloc chdir
    chmod chown clock_getres clock_gettime clock_nanosleep connect copy_file_range creat
    epoll_ctl epoll_pwait epoll_wait execl execle execlp execv execve execvp execvpe
    faccessat fchmodat fchownat fcntl fcntl64 fexecve fopen fopen64 fread fread_unlocked
    free fstat fstat64 fstatat fstatat64 fstatfs fwrite fwrite_unlocked getcwd getdents64
    getentropy getgroups getitimer getpeername getrandom getrlimit getrusage getsockname
    getsockopt gettimeofday ioctl lchown link lstat lstat64 malloc memalign mkdir mkdirat
    mkstemp mmap mmap64 mprotect mremap munmap nanosleep open open64 openat openat64 opendir
    pipe pipe2 poll posix_memalign posix_spawn posix_spawnp ppoll pread pread64 preadv
    preadv2 preadv64 preadv64v2 prlimit pselect pthread_attr_setstack pthread_sigmask
    pvalloc pwrite pwrite64 pwritev pwritev2 pwritev64 pwritev64v2 read readlink readlinkat
    readv realloc reallocarray recv recvfrom recvmmsg recvmsg rename renameat renameat2
    rmdir sched_getaffinity sched_setaffinity select send sendfile sendmmsg sendmsg sendto
    setbuf setbuffer setitimer setrlimit setsockopt setvbuf sigaction sigaltstack signal
    sigpending sigprocmask sigsuspend sigtimedwait sigwaitinfo socketpair splice stat stat64
    statfs statx symlink syscall sysinfo sysv_signal timerfd_gettime timerfd_settime times
    truncate uname unlink unlinkat utimensat valloc wait wait3 wait4 waitid waitpid write
    writev
    """.split()
)


@needs_cc
def test_library_exports_exactly_the_wrappers() -> None:
    out = subprocess.run(
        ["nm", "-D", "--defined-only", str(shim_path())], capture_output=True, text=True
    )
    if out.returncode != 0:
        pytest.skip("nm is not available")
    assert {ln.split()[-1] for ln in out.stdout.splitlines()} == EXPORTS


def test_every_source_file_is_in_the_hash(private_source: Path) -> None:
    before = build.source_hash(private_source)
    assert build.has_sources(private_source)
    header = private_source / build.HEADERS[0]
    header.write_text(header.read_text() + "/* changed */\n")
    assert build.source_hash(private_source) != before
    (private_source / build.SOURCES[-1]).unlink()
    assert not build.has_sources(private_source)
    with pytest.raises(ExternalToolError, match="C source is missing"):
        build.compile_shim(private_source / "x.so", private_source)


def test_no_compiler_is_a_clear_error(
    private_source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(ExternalToolError, match="no C compiler"):
        shim_path()


@needs_cc
def test_compile_error_is_reported(private_source: Path) -> None:
    (private_source / build.SOURCES[-1]).write_text("this is not C;\n")
    with pytest.raises(ExternalToolError, match="building the allocation shim failed"):
        shim_path()


@needs_cc
def test_build_cli(tmp_path: Path) -> None:
    out = tmp_path / "lib" / "x.so"
    res = subprocess.run(
        [sys.executable, "-m", "placer.collectors.shim.build", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out) and build.embedded_hash(out) == build.source_hash()
    assert res.stderr == ""


@needs_cc
def test_shim_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/x/other.so")
    env = shim_env("/tmp/a.%p.log", sample_period_ms=0, threshold=1 << 20)
    assert env["PLACER_SHIM_LOG"] == "/tmp/a.%p.log"
    assert env["PLACER_SHIM_SAMPLE_PERIOD_MS"] == "0"
    assert env["PLACER_SHIM_THRESHOLD"] == str(1 << 20)
    assert env["LD_PRELOAD"] == f"{shim_path().resolve()} /x/other.so"
    with pytest.raises(TypeError):
        shim_env("/tmp/x", bogus=1)


def test_embedded_hash_of_foreign_files(tmp_path: Path) -> None:
    f = tmp_path / "x.so"
    f.write_bytes(os.urandom(1000))
    assert build.embedded_hash(f) is None
    assert build.embedded_hash(tmp_path / "missing.so") is None
