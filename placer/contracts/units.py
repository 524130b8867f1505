"""Size parsing every layer shares: one reading of ``64KiB``, ``2M``, ``1.5GiB``.

Sense (``placer profile --chunk``) and decide (``placer recommend --dram-budget 8GiB``) both
read sizes typed by a person; they must agree on what ``2M`` means, so the rule lives here.
"""

from __future__ import annotations

import re

from placer.errors import InvalidInputError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """``4096``, ``64KiB``, ``2M``, ``1.5GiB`` → bytes (binary multiples)."""
    m = _SIZE.match(str(text))
    if not m:
        raise InvalidInputError(f"{what}: cannot read {text!r} as a size (e.g. 2MiB, 65536)")
    mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


_SHARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_budget_spec(text: str, what: str = "DRAM budget") -> tuple[float | None, int | None]:
    """``50%`` → (50.0, None); ``8GiB`` → (None, bytes). One reading of a DRAM budget.

    A budget is read where it is typed (the daemon's settings, ``recommend``) so that a
    budget like ``xyz`` is refused at once, not when the first decision is due.
    """
    m = _SHARE.match(str(text))
    if m:
        pct = float(m.group(1))
        if not 0 <= pct <= 100:
            raise InvalidInputError(f"{what} {text} is not between 0% and 100%")
        return pct, None
    return None, parse_size(text, what)
