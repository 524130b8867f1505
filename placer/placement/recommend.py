"""``placer recommend``: rank a run's objects, plan them under a budget, compare baselines."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from placer.contracts.host import host_stamp, this_host
from placer.contracts.naming import object_name, site_chain, wrapper_frames
from placer.emulator.host import stored
from placer.emulator.load import load_profile
from placer.emulator.model import estimate
from placer.emulator.plans import plan_from_document
from placer.errors import PlacerError
from placer.placement import baselines, planner
from placer.placement.features import run_features
from placer.placement.model import finite
from placer.placement.planfile import PLAN_FORMAT, PLAN_VERSION, validate
from placer.placement.registry import LoadedModel
from placer.store.repository.labels import NewDecision, add_plan
from placer.store.repository.runs import application_name, find_run, sites_by_id
from placer.tiers.specs import load_spec
from placer.tiers.sysfs import detect_nodes

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Where allocations of sites the plan does not name go (see docs/placement.md).
DEFAULT_TIER = "dram"


@dataclass
class Nodes:
    dram: int
    slow: int
    note: str = ""


def host_nodes(root: str = "/") -> Nodes:
    """DRAM node and slow node of this host; without a slow tier both are the DRAM node."""
    nodes = detect_nodes(root)
    dram = next((n.node for n in nodes if n.kind == "dram"), 0)
    slow = next((n.node for n in nodes if n.kind != "dram"), None)
    if slow is None:
        return Nodes(
            dram,
            dram,
            "this host has no slow tier: slow decisions are bound to the "
            f"DRAM node {dram} (the plan is applied for real, its effect "
            f"is emulated)",
        )
    return Nodes(dram, slow)


def emulated_price(
    session: Session, run_id: int, doc: dict[str, Any], tier: str = "optane"
) -> dict[str, Any]:
    """The plan priced the way ``placer emulate --plan`` and the labels price it.

    The same profile, stored host model and tier spec as every other pricing path, so the
    numbers agree; unavailable (with why) when the run has no deep-mode traffic or the
    host has no stored model.
    """
    try:
        profile = load_profile(session, run_id)
        host = stored(session)
        slow = plan_from_document(doc, profile, "the recommended plan")
    except PlacerError as exc:
        return {"available": False, "tier": tier, "note": str(exc)}
    est = estimate(profile, slow, load_spec(tier), load_spec("dram"), host)
    return {
        "available": True,
        "tier": tier,
        "slowdown": round(est.slowdown, 6),
        "base_seconds": est.base_seconds,
        "host_model": host.host_model_id,
        "host_model_fingerprint": host.host_model_fingerprint,
    }


def recommend(
    session: Session,
    run_id: int,
    budget: str,
    loaded: LoadedModel,
    nodes: Nodes,
    *,
    store_plan: bool = True,
    top: int = 20,
) -> dict[str, Any]:
    """Build (and store) the model's plan for ``run_id``; returns the JSON document."""
    table = run_features(session, run_id)  # raises for a missing run or one without objects
    run = find_run(session, run_id)
    assert run is not None  # run_features raised NotFoundError otherwise
    grouped = planner.groups(table)
    total = planner.footprint(grouped)
    nbytes, fraction = planner.parse_budget(budget, total)
    # the model's plan exactly as `placer evaluate` scores it (evaluation.score_run)
    pred = loaded.model.penalties(table)
    scores = loaded.model.rank_scores(table)
    model_strategy = baselines.ValueKnapsack("model", pred)
    cands = baselines.group_candidates(grouped)  # once: a run may have 10,000 sites
    mask = model_strategy.pick(cands, nbytes)
    solver = model_strategy.solver  # how the per-moment budget was solved (docs/placement.md)
    predicted = planner.plan_value(grouped, mask, pred)
    compare = {"model": predicted}
    for strat in baselines.heuristics():
        compare[strat.name] = planner.plan_value(grouped, strat.pick(cands, nbytes), pred)

    site_ids = {int(sid) for sid in set(grouped["site_id"])}
    sites = sites_by_id(session, site_ids)
    wrappers = wrapper_frames(site_chain(s) for s in sites.values())
    names = {}
    for sid in site_ids:
        chain, functions = site_chain(sites.get(sid))
        names[sid] = object_name(chain, "", functions, wrappers)
    group_value = planner.group_values(grouped, pred)
    natives = {(r.site_hash, int(r.chunk_index)): r.native_site for r in table.itertuples()}
    decisions = []
    for i, row in enumerate(grouped.itertuples()):
        decisions.append(
            {
                "site": row.site_hash,
                "chunk": int(row.chunk_index),
                "tier": "dram" if mask[i] else "slow",
                "node": nodes.dram if mask[i] else nodes.slow,
                "size_bytes": int(row.weight),
                "score": round(float(group_value[i]), 8),
                "name": names.get(int(row.site_id), ""),
            }
        )
        native = natives.get((row.site_hash, int(row.chunk_index)))
        if row.site_hash.startswith("py-") and native and not native.startswith("py-"):
            decisions[-1]["native_site"] = native
    decisions.sort(key=lambda d: (-d["score"], d["site"], d["chunk"]))
    app_name = application_name(session, run.application_id)
    doc: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "version": PLAN_VERSION,
        "build_id": run.build_id or "",
        "binary": run.binary_path or "",
        "app": app_name or "",
        "run": run_id,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "strategy": "model",
        "model": {"name": loaded.name, "version": loaded.version, "id": loaded.penalty_row_id},
        "budget": {
            "bytes": nbytes,
            "fraction": round(fraction, 6),
            "footprint_bytes": total,
            "spec": str(budget),
            "solver": solver,
        },
        "nodes": {
            "dram": nodes.dram,
            "slow": nodes.slow,
            "default_tier": DEFAULT_TIER,
            **({"note": nodes.note} if nodes.note else {}),
        },
        "predicted_slowdown": round(predicted, 6),
        "baselines": {k: round(v, 6) for k, v in compare.items() if k != "model"},
        "decisions": decisions,
    }
    chunk = (run.inputs or {}).get("chunk_bytes")
    if chunk:  # the profile's --chunk: the shim binds a split site's chunks one by one
        doc["chunk_bytes"] = int(chunk)
    emulated = emulated_price(session, run_id, doc)
    doc["emulated"] = emulated
    doc["host"] = host_stamp(
        this_host(), emulated.get("host_model"), emulated.get("host_model_fingerprint", "")
    )
    validate(doc)  # once, the whole document: what is stored and what `--output` writes
    order = sorted(range(len(table)), key=lambda i: -scores[i])[:top]
    ranked = [
        {
            "rank": r + 1,
            "object": int(table["object_id"].iat[i]),
            "site": table["site_hash"].iat[i],
            "chunk": int(table["chunk_index"].iat[i]),
            "name": names.get(int(table["site_id"].iat[i]), ""),
            "size_bytes": int(table["size_bytes"].iat[i]),
            "score": finite(float(scores[i])),
            "predicted_penalty": finite(pred[int(table["object_id"].iat[i])]),
            "density_mean": finite(float(table["density_mean"].iat[i]))
            if not math.isnan(table["density_mean"].iat[i])
            else None,
        }
        for r, i in enumerate(order)
    ]
    plan_id = None
    if store_plan:
        site_ids_of = {
            (r.site_hash, int(r.chunk_index)): int(r.site_id) for r in grouped.itertuples()
        }
        plan = add_plan(
            session,
            run_id=run_id,
            model_id=loaded.penalty_row_id,
            strategy="model",
            build_id=run.build_id or "",
            budget_bytes=nbytes,
            predicted_slowdown=predicted,
            document=doc,
            decisions=[
                NewDecision(
                    site_id=site_ids_of[(d["site"], d["chunk"])],
                    chunk_index=d["chunk"],
                    tier=d["tier"],
                    numa_node=d["node"],
                    size_bytes=d["size_bytes"],
                    score=d["score"],
                    reason=f"knapsack on predicted penalty ({loaded.version})",
                )
                for d in decisions
            ],
        )
        plan_id = plan.id
    return {
        "run": run_id,
        "plan_id": plan_id,
        "ranked": ranked,
        "predicted_slowdown": {k: round(v, 6) for k, v in compare.items()},
        "emulated": doc["emulated"],
        "plan": doc,
    }
