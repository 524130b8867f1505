"""The socket protocol: one JSON object per line, at most :data:`MAX_MESSAGE` bytes.

Nothing received is ever executed or unpickled: messages are parsed with ``json.loads``
into plain dicts and every field is checked by type before use. A request is
``{"op": NAME, ...}``; a reply is ``{"ok": true, ...}`` or ``{"ok": false, "error": TEXT}``.
"""

from __future__ import annotations

import json
from typing import Any

from placer.errors import InvalidInputError

MAX_MESSAGE = 256 * 1024
OPS = ("status", "attach", "detach", "exit", "pipeline", "jobs", "job", "ping")


class ProtocolError(InvalidInputError):
    """A message that is not one JSON object line within the size limit."""


def encode(message: dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False, default=str).encode()
    if len(data) + 1 > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(data)} bytes is over the {MAX_MESSAGE} limit")
    return data + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_MESSAGE:
        raise ProtocolError(f"message over the {MAX_MESSAGE}-byte limit")
    try:
        doc = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"not a JSON message: {exc}") from None
    if not isinstance(doc, dict):
        raise ProtocolError("a message must be a JSON object")
    return doc


def field(
    doc: dict[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    *,
    required: bool = True,
    default: Any = None,
) -> Any:
    """``doc[name]`` checked against ``kind`` (bools are not ints here)."""
    if name not in doc or doc[name] is None:
        if required:
            raise ProtocolError(f"missing field {name!r}")
        return default
    value = doc[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(f"field {name!r} has the wrong type")
    if not isinstance(value, kinds):
        raise ProtocolError(f"field {name!r} has the wrong type")
    return value
