"""Placements the emulator evaluates: a stored plan, a plan file, all-slow, or one site.

Plan files (JSON, ``"format": "placer-plan"``, version 1)::

    {"format": "placer-plan", "version": 1, "build_id": "<hex build id of the binary>",
     "decisions": [{"site": "<site hash>", "chunk": 0, "tier": "slow"}, ...]}

``chunk`` is optional (all chunks); ``tier`` is ``dram`` or ``slow``. A plan for another
binary (its build id differs from the run's) is refused, and so is a plan stamped with
another host (``"host"``, written by ``placer recommend``). Stored plans (``placer_plans``
rows, by id) are read the same way through their decisions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.contracts.host import stamp_mismatch, this_host
from placer.contracts.streams import MAX_PLAN_BYTES, read_limited
from placer.emulator.model import RunProfile
from placer.errors import InvalidInputError, NotFoundError
from placer.store.repository.labels import plan_by_id
from placer.store.repository.runs import sites_by_id

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _check_build(plan_build: str, profile: RunProfile, what: str) -> None:
    if plan_build and profile.build_id and plan_build != profile.build_id:
        raise InvalidInputError(
            f"{what} is for another binary (build id {plan_build[:16]}, run {profile.run_id} "
            f"has {profile.build_id[:16]})"
        )


def _select(
    profile: RunProfile, decisions: Sequence[tuple[str, int | None, str]], what: str
) -> set[int]:
    known = {o.site_hash for o in profile.objects}
    slow: set[int] = set()
    matched = 0
    for site, chunk, tier in decisions:
        if tier not in ("dram", "slow"):
            raise InvalidInputError(f"{what}: tier {tier!r} is neither 'dram' nor 'slow'")
        if site in known:
            matched += 1
        if tier != "slow":
            continue
        for o in profile.objects:
            if o.site_hash == site and (chunk is None or o.chunk_index == chunk):
                slow.add(o.object_id)
    if decisions and not matched:
        raise InvalidInputError(
            f"{what} names no allocation site of run {profile.run_id} (a plan for another "
            f"binary or program?)"
        )
    return slow


def _check_host(stamp: Any, what: str) -> None:
    """A plan priced on another host's model prices nothing here (its nodes, cache, DRAM)."""
    why = stamp_mismatch(stamp, this_host(), what)
    if why:
        raise InvalidInputError(why)


def plan_from_file(path: Path, profile: RunProfile) -> set[int]:
    what = f"plan {path}"
    data = read_limited(path, MAX_PLAN_BYTES, what)
    try:
        doc = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise InvalidInputError(f"{what}: not JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{what}: not JSON ({exc})") from None
    return plan_from_document(doc, profile, what)


def plan_from_document(doc: Any, profile: RunProfile, what: str = "plan") -> set[int]:
    """The objects a plan document sends to the slow tier (the file's JSON, or
    ``placer recommend``'s own document: one reading for both)."""
    if not isinstance(doc, dict) or doc.get("format") != "placer-plan":
        raise InvalidInputError(f'{what}: not a placer plan (no "format": "placer-plan")')
    if doc.get("version") != 1:
        raise InvalidInputError(f"{what}: unsupported version {doc.get('version')!r}")
    _check_build(str(doc.get("build_id") or ""), profile, what)
    _check_host(doc.get("host"), what)
    raw = doc.get("decisions")
    if not isinstance(raw, list):
        raise InvalidInputError(f"{what}: 'decisions' must be a list")
    decisions = []
    for n, d in enumerate(raw):
        if not isinstance(d, dict) or not isinstance(d.get("site"), str):
            raise InvalidInputError(f"{what}: decision {n} has no site hash")
        chunk = d.get("chunk")
        if chunk is not None and (not isinstance(chunk, int) or chunk < 0):
            raise InvalidInputError(f"{what}: decision {n} has a bad chunk {chunk!r}")
        decisions.append((d["site"], chunk, str(d.get("tier", "slow"))))
    return _select(profile, decisions, what)


def plan_from_store(session: Session, plan_id: int, profile: RunProfile) -> set[int]:
    plan = plan_by_id(session, plan_id)
    if plan is None:
        raise NotFoundError(f"plan {plan_id} is not in the store")
    what = f"plan {plan_id}"
    _check_build(plan.build_id, profile, what)
    _check_host((plan.document or {}).get("host"), what)
    sites = sites_by_id(session, {d.site_id for d in plan.decisions})
    decisions = []
    for d in plan.decisions:
        site = sites.get(d.site_id)
        decisions.append((site.site_hash if site else "", d.chunk_index, d.tier))
    return _select(profile, decisions, what)


def resolve_plan(session: Session, ref: str, profile: RunProfile) -> set[int]:
    """``ref`` is a stored plan id or a plan file path."""
    path = Path(ref)
    if path.is_file():
        return plan_from_file(path, profile)
    if ref.isdigit():
        return plan_from_store(session, int(ref), profile)
    raise InvalidInputError(f"plan {ref!r}: no such file, and not a stored plan id")


def site_objects(profile: RunProfile, site: str) -> set[int]:
    """Objects of one site, by hash (a unique prefix of at least 6 characters works)."""
    hits = {o.site_hash for o in profile.objects if o.site_hash.startswith(site)}
    if len(site) < 6 or not hits:
        raise InvalidInputError(f"site {site!r} is not a site of run {profile.run_id}")
    if len(hits) > 1:
        raise InvalidInputError(f"site prefix {site!r} is ambiguous in run {profile.run_id}")
    (full,) = hits
    return {o.object_id for o in profile.objects if o.site_hash == full}


def write_plan(path: Path, profile: RunProfile, slow: set[int]) -> None:
    """Write a plan file putting the sites/chunks of ``slow`` in the slow tier."""
    decisions = []
    seen: set[tuple[str, int]] = set()
    for o in profile.objects:
        key = (o.site_hash, o.chunk_index)
        if key in seen:
            continue
        seen.add(key)
        decisions.append(
            {
                "site": o.site_hash,
                "chunk": o.chunk_index,
                "tier": "slow" if o.object_id in slow else "dram",
            }
        )
    path.write_text(
        json.dumps(
            {
                "format": "placer-plan",
                "version": 1,
                "build_id": profile.build_id,
                "decisions": decisions,
            },
            indent=1,
        )
    )
