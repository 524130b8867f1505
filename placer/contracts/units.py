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
