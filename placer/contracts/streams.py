"""File-descriptor plumbing shared by every layer: what goes to stdout is the user's document."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


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
