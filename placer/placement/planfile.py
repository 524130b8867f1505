"""The plan file: versioned JSON, validated with a JSON Schema before anything uses it.

It is a superset of the emulator's plan format (``format``, ``version``, ``build_id``,
``decisions[].site/chunk/tier``), so ``placer emulate --plan`` scores the same file that
``placer run --plan`` applies. See docs/placement.md for every field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from placer.contracts.streams import MAX_PLAN_BYTES, read_limited
from placer.errors import InvalidInputError

PLAN_FORMAT = "placer-plan"
PLAN_VERSION = 1
#: NUMA node ids are below the kernel's MAX_NUMNODES (at most 1024).
MAX_NODE = 1023
#: Sizes, counts and ids are 64-bit in the store and in the shim.
MAX_INT = 2**63 - 1
_NODE = {"type": "integer", "minimum": 0, "maximum": MAX_NODE}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_INT}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "placer plan",
    "type": "object",
    "required": ["format", "version", "build_id", "budget", "nodes", "decisions"],
    "properties": {
        "format": {"const": PLAN_FORMAT},
        "version": {"const": PLAN_VERSION},
        "build_id": {"type": "string"},
        "binary": {"type": "string"},
        "app": {"type": "string"},
        "run": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_INT},
        "created": {"type": "string"},
        "strategy": {"type": "string"},
        "model": {
            "type": ["object", "null"],
            "required": ["name", "version"],
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "id": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_INT},
            },
        },
        "budget": {
            "type": "object",
            "required": ["bytes", "fraction", "footprint_bytes"],
            "properties": {
                "bytes": _COUNT,
                "fraction": {"type": "number", "minimum": 0, "maximum": 1},
                "footprint_bytes": _COUNT,
                "spec": {"type": "string"},
            },
        },
        "nodes": {
            "type": "object",
            "required": ["dram", "slow", "default_tier"],
            "properties": {
                "dram": _NODE,
                "slow": _NODE,
                "default_tier": {"enum": ["dram", "slow"]},
                "note": {"type": "string"},
            },
        },
        "host": {
            "type": "object",
            "required": ["hostname", "fingerprint"],
            "properties": {
                "hostname": {"type": "string"},
                "fingerprint": {"type": "string"},
                "host_model": {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_INT},
                "host_model_fingerprint": {"type": "string"},
            },
        },
        "chunk_bytes": _COUNT,
        "predicted_slowdown": {"type": ["number", "null"], "minimum": 1},
        "baselines": {"type": "object", "additionalProperties": {"type": ["number", "null"]}},
        "decisions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["site", "chunk", "tier", "node"],
                "properties": {
                    "site": {"type": "string", "pattern": "^(py-)?[0-9a-f]{1,64}$"},
                    "native_site": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                    "chunk": _COUNT,
                    "tier": {"enum": ["dram", "slow"]},
                    "node": _NODE,
                    "size_bytes": _COUNT,
                    "score": {"type": "number"},
                    "name": {"type": "string"},
                },
            },
        },
    },
}


def validate(doc: Any, where: str = "plan") -> dict[str, Any]:
    """Raise a one-line :class:`InvalidInputError` unless ``doc`` is a valid plan."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    try:
        error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    except RecursionError:
        raise InvalidInputError(f"{where} is not a valid placer plan: nested too deeply") from None
    if error is not None:
        path = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise InvalidInputError(f"{where} is not a valid placer plan: at {path}: {error.message}")
    seen: set[tuple[str, int]] = set()
    for d in doc["decisions"]:
        key = (d["site"], d["chunk"])
        if key in seen:
            raise InvalidInputError(
                f"{where}: site {d['site']} chunk {d['chunk']} is planned twice"
            )
        seen.add(key)
    out: dict[str, Any] = doc
    return out


def read_plan(path: Path) -> dict[str, Any]:
    """The validated plan in ``path``: a regular file of at most ``MAX_PLAN_BYTES``."""
    data = read_limited(path, MAX_PLAN_BYTES, f"plan {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(f"plan {path} is not UTF-8 text") from None
    return parse_plan(text, f"plan {path}")


def _no_constant(name: str) -> Any:
    """JSON has no NaN or Infinity (Python's reader takes them): a plan must not either."""
    raise ValueError(f"{name} is not a JSON number")


def parse_plan(text: str, where: str = "plan") -> dict[str, Any]:
    """A plan from JSON text; anything else is one line of :class:`InvalidInputError`."""
    try:
        doc = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInputError(f"{where} is not JSON: nested too deeply") from None
    except ValueError as exc:
        raise InvalidInputError(f"{where} is not JSON: {exc}") from None
    return validate(doc, where)


def write_plan(path: Path, doc: dict[str, Any], *, validated: bool = False) -> None:
    """Write ``doc`` as a plan file; ``validated``: the caller already ran :func:`validate`
    on this very document (``placer recommend``'s plan: 0.5 s for 10,000 sites)."""
    if not validated:
        validate(doc)
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", "utf-8")


def _by_native(doc: dict[str, Any]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Native site → plan site → its decisions (a native site's own decisions under itself).

    A Python decision without a native hash is not listed: the shim cannot match it.
    """
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for d in doc["decisions"]:
        native = d.get("native_site") or d["site"]
        if native.startswith("py-"):
            continue
        out.setdefault(native, {}).setdefault(d["site"], []).append(d)
    return out


def _disagree(sites: dict[str, list[dict[str, Any]]]) -> bool:
    """Several plan sites share the native site and not all go to one node."""
    return len(sites) > 1 and len({d["node"] for ds in sites.values() for d in ds}) > 1


def unbound_native_sites(doc: dict[str, Any]) -> list[str]:
    """Native sites the shim must not bind: plan sites sharing them go to different nodes.

    Binding such a site to any one node would put some planned object on the wrong tier
    (a hot Python table and cold arrays allocated through numpy's one native site).
    """
    return sorted(n for n, sites in _by_native(doc).items() if _disagree(sites))


def python_native_sites(doc: dict[str, Any]) -> list[str]:
    """Native sites that only Python (``py-``) decisions map to, all on one node."""
    return sorted(
        n
        for n, sites in _by_native(doc).items()
        if all(s.startswith("py-") for s in sites) and not _disagree(sites)
    )


def _heaviest(per: dict[int, int]) -> int:
    return max(per, key=lambda n: (per[n], -n))


def _weight(d: dict[str, Any]) -> int:
    return max(int(d.get("size_bytes", 0)), 1)


def _chunk_nodes(decisions: list[dict[str, Any]]) -> dict[int, dict[int, int]]:
    """Chunk → node → planned bytes."""
    out: dict[int, dict[int, int]] = {}
    for d in decisions:
        per = out.setdefault(int(d["chunk"]), {})
        per[d["node"]] = per.get(d["node"], 0) + _weight(d)
    return out


def _site_lines(
    key: str, chunks: dict[int, dict[int, int]], size: int, per_chunk: bool
) -> list[tuple[str, int, int | None]]:
    """(key, node, chunk or None for whole) bindings of one site, as the shim binds them."""
    nodes = {n for per in chunks.values() for n in per}
    if (len(nodes) > 1 or per_chunk) and size > 0:
        return [(key, _heaviest(chunks[c]), c) for c in sorted(chunks)]
    total: dict[int, int] = {}
    for per in chunks.values():
        for n, w in per.items():
            total[n] = total.get(n, 0) + w
    return [(key, _heaviest(total), None)]


def shim_lines(
    doc: dict[str, Any],
    chunk_bytes: int | None = None,
    *,
    per_chunk: frozenset[str] = frozenset(),
    python_side: bool = False,
) -> list[str]:
    """The shim's plan text (``PLACER_SHIM_PLAN``), one line per planned site or chunk.

    A site whose chunks all go to one node: ``0x<site hash> node`` (the whole allocation).
    A split site (its chunks on different nodes): ``0x<site hash> node chunk chunk_bytes``
    per planned chunk, in chunk order; the shim binds that chunk's byte range of every
    allocation of the site. The chunk size is ``chunk_bytes`` or the plan's own
    ``chunk_bytes`` (the profile's ``--chunk``); without one a split site is bound whole to
    the node holding most of its planned bytes (:func:`collapsed_sites` lists those).
    The shim matches native sites (Python sites use the native hash recorded with them).
    Sites in ``per_chunk`` get chunk lines even on one node: a partial plan naming only
    the chunks to bind (the measured experiments bind only the chunks sent to the slow node).

    A native site shared by plan sites going to different nodes is never named
    (:func:`unbound_native_sites`). ``python_side``: the Python runner binds ``py-`` sites
    itself (:func:`python_bindings`), so native sites only they map to are not named either.
    """
    size = chunk_bytes if chunk_bytes is not None else int(doc.get("chunk_bytes") or 0)
    out = []
    for site, sites in _by_native(doc).items():
        if _disagree(sites):
            continue
        if python_side and all(s.startswith("py-") for s in sites):
            continue
        chunks = _chunk_nodes([d for ds in sites.values() for d in ds])
        for key, node, chunk in _site_lines(site, chunks, size, site in per_chunk):
            out.append(f"0x{key} {node}" if chunk is None else f"0x{key} {node} {chunk} {size}")
    return out


def python_bindings(doc: dict[str, Any], chunk_bytes: int | None = None) -> dict[str, Any]:
    """What the Python runner binds: ``{"sites": {py-site: node | {chunk: node}}, "chunk_bytes"}``.

    Whole or per chunk by the rules of :func:`shim_lines` (a split site without a known
    chunk size goes whole to its heaviest node); JSON-ready (chunk keys are strings).
    """
    size = chunk_bytes if chunk_bytes is not None else int(doc.get("chunk_bytes") or 0)
    per_site: dict[str, list[dict[str, Any]]] = {}
    for d in doc["decisions"]:
        if d["site"].startswith("py-"):
            per_site.setdefault(d["site"], []).append(d)
    sites: dict[str, Any] = {}
    for site, decisions in sorted(per_site.items()):
        lines = _site_lines(site, _chunk_nodes(decisions), size, False)
        if lines[0][2] is None:
            sites[site] = lines[0][1]
        else:
            sites[site] = {str(chunk): node for _, node, chunk in lines}
    return {"sites": sites, "chunk_bytes": size}


def parse_shim_lines(
    lines: list[str],
) -> tuple[dict[int, str], dict[str, int], dict[str, dict[int, int]]]:
    """``shim_lines`` output → (shim hash → site key, site → node, site → chunk → node).

    A split site's node in the second map is the one holding most of its chunks.
    """
    site_of: dict[int, str] = {}
    whole: dict[str, int] = {}
    chunks: dict[str, dict[int, int]] = {}
    for line in lines:
        parts = line.split()
        key = parts[0][2:]
        site_of[int(parts[0], 16)] = key
        if len(parts) == 4:
            chunks.setdefault(key, {})[int(parts[2])] = int(parts[1])
        else:
            whole[key] = int(parts[1])
    for key, per in chunks.items():
        if key not in whole:
            votes = list(per.values())
            whole[key] = max(set(votes), key=lambda n: (votes.count(n), -n))
    return site_of, whole, chunks


def split_sites(doc: dict[str, Any]) -> list[str]:
    """Sites whose chunks the plan puts on different nodes."""
    nodes: dict[str, set[int]] = {}
    for d in doc["decisions"]:
        nodes.setdefault(d["site"], set()).add(d["node"])
    return sorted(s for s, n in nodes.items() if len(n) > 1)


def collapsed_sites(doc: dict[str, Any], chunk_bytes: int | None = None) -> list[str]:
    """Split sites :func:`shim_lines` binds whole: the chunk size is not known."""
    size = chunk_bytes if chunk_bytes is not None else int(doc.get("chunk_bytes") or 0)
    return [] if size > 0 else split_sites(doc)


def check_build_id(
    doc: dict[str, Any],
    build_id: str,
    *,
    force: bool,
    where: str = "plan",
    binary: str = "the program",
) -> bool:
    """Refuse a plan that is not provably for this binary unless ``force``; True if forced.

    A plan names its binary by build id. An empty (or missing) build id proves nothing: it
    could be for any program, so it is refused like a mismatch, as is a program without a
    build id of its own (nothing to compare with).
    """
    planned = str(doc.get("build_id") or "")
    if planned and planned == build_id:
        return False
    if force:
        return True
    if not planned:
        raise InvalidInputError(
            f"{where} has no build id: it cannot be checked against {binary} "
            f"(build id {build_id[:16] or 'none'}); use --force to apply it anyway"
        )
    raise InvalidInputError(
        f"{where} is for another binary (build id {planned[:16]}, {binary} has "
        f"{build_id[:16] or 'none'}); use --force to apply it anyway"
    )
