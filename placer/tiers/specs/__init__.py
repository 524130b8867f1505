"""Tier specs: what-if descriptions of DRAM and slow tiers, read from TOML.

A spec names the tier and gives each constant as ``{value, source}``: the loader refuses a
constant without a source, so a spec can never carry an unexplained number. Shipped specs
(``dram``, ``optane``, ``cxl``) live next to this module; any other file path works too.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from placer.errors import InvalidInputError

#: Constants every spec must give (units in the names).
REQUIRED = (
    "read_latency_random_ns",
    "read_latency_sequential_ns",
    "read_bandwidth_gbps",
    "write_bandwidth_gbps",
    "access_granularity_bytes",
    "write_saturation_threads",
)
SHIPPED = ("dram", "optane", "cxl")


@dataclass(frozen=True)
class TierSpec:
    """One tier's published characteristics; ``sources`` says where each number comes from."""

    name: str
    kind: str
    description: str
    read_latency_random_ns: float
    read_latency_sequential_ns: float
    read_bandwidth_gbps: float
    write_bandwidth_gbps: float
    access_granularity_bytes: int
    write_saturation_threads: int
    sources: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The spec as stored with every label (values and sources)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "constants": {k: getattr(self, k) for k in REQUIRED},
            "sources": dict(self.sources),
        }

    def scaled(self, **factors: float) -> TierSpec:
        """A copy with some constants multiplied (sensitivity analysis)."""
        values = {k: getattr(self, k) for k in REQUIRED}
        for key, f in factors.items():
            if key not in values:
                raise KeyError(key)
            values[key] = type(values[key])(values[key] * f)
        return TierSpec(
            self.name, self.kind, self.description, sources=self.sources, path=self.path, **values
        )


def _parse(doc: dict[str, Any], where: str) -> TierSpec:
    tier = doc.get("tier")
    consts = doc.get("constants")
    if not isinstance(tier, dict) or not isinstance(tier.get("name"), str):
        raise InvalidInputError(f"tier spec {where}: missing [tier] table with a name")
    if not isinstance(consts, dict):
        raise InvalidInputError(f"tier spec {where}: missing [constants] tables")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key in REQUIRED:
        entry = consts.get(key)
        if not isinstance(entry, dict) or "value" not in entry:
            raise InvalidInputError(f"tier spec {where}: constant {key} is missing")
        value = entry["value"]
        source = entry.get("source")
        if not isinstance(source, str) or not source.strip():
            raise InvalidInputError(f"tier spec {where}: constant {key} has no source")
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise InvalidInputError(f"tier spec {where}: constant {key} must be a number >= 0")
        positive = key not in ("write_saturation_threads",)
        if positive and value <= 0:
            raise InvalidInputError(f"tier spec {where}: constant {key} must be > 0")
        values[key] = value
        sources[key] = source.strip()
    unknown = sorted(set(consts) - set(REQUIRED))
    if unknown:
        raise InvalidInputError(f"tier spec {where}: unknown constant {unknown[0]}")
    return TierSpec(
        name=tier["name"],
        kind=str(tier.get("kind", "slow")),
        description=str(tier.get("description", "")),
        read_latency_random_ns=float(values["read_latency_random_ns"]),
        read_latency_sequential_ns=float(values["read_latency_sequential_ns"]),
        read_bandwidth_gbps=float(values["read_bandwidth_gbps"]),
        write_bandwidth_gbps=float(values["write_bandwidth_gbps"]),
        access_granularity_bytes=int(values["access_granularity_bytes"]),
        write_saturation_threads=int(values["write_saturation_threads"]),
        sources=sources,
        path=where,
    )


def load_spec(name_or_path: str) -> TierSpec:
    """A shipped spec by name (``dram``, ``optane``, ``cxl``) or a TOML file by path."""
    if name_or_path in SHIPPED:
        text = resources.files(__name__).joinpath(f"{name_or_path}.toml").read_text("utf-8")
        where = f"{name_or_path} (shipped)"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InvalidInputError(
                f"unknown tier {name_or_path!r}: use one of {', '.join(SHIPPED)} or a TOML file"
            )
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"cannot read tier spec {path}: {exc}") from None
        where = str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidInputError(f"tier spec {where}: not TOML ({exc})") from None
    return _parse(doc, where)


__all__ = ["REQUIRED", "SHIPPED", "TierSpec", "load_spec"]
