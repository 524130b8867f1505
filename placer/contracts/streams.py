"""File-descriptor plumbing shared by every layer: what goes to stdout is the user's document."""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterator

from placer.errors import InvalidInputError

#: Largest plan file read (``run``/``emulate``/``plan`` read one whole before anything
#: runs): a million decisions are ~200 MB of JSON.
MAX_PLAN_BYTES = 256 * 1024 * 1024


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send fd 1 to fd 2 for a while: a program's or a native library's own prints (HiGHS
    writes diagnostics straight to fd 1) must not mix into a JSON document on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def read_limited(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of regular file ``path``, refused (one line) past ``limit`` bytes.

    Input files are read whole; a FIFO, a device (``/dev/zero``) or a huge file would
    otherwise grow placer without bound before anything checks the content.
    """
    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise InvalidInputError(f"{what} is not a regular file")
            data = f.read(limit + 1)
    except OSError as exc:
        raise InvalidInputError(f"cannot read {what}: {exc.strerror}") from None
    if len(data) > limit:
        raise InvalidInputError(f"{what} is larger than {limit} bytes")
    return data
