"""The run report's headline: the one slowdown it leads with, and its verdict.

The chosen plan's ``headline_slowdown`` (labels when the run has any, else the model's
prediction) is what the verdict, the Run card and the plan's star on the budget curve show.
"""

from __future__ import annotations

from typing import Any

from placer.reports.base import verdict
from placer.reports.render import human_bytes, pct, slow


def place_plans(curve: dict[str, Any], plan: dict[str, Any]) -> None:
    """Each stored plan's point on the curve (``slowdown``), on the curve's own basis: the
    model's prediction on a predicted curve; on a labeled one, only the chosen plan's
    labels price (the number the verdict and the plan section quote)."""
    kind = (curve.get("provenance") or {}).get("kind")
    for p in curve.get("stored_plans", []):
        p["slowdown"] = p["predicted_slowdown"] if kind == "predicted" else None
        if plan.get("available") and p["plan_id"] == plan["id"]:
            if plan["headline_basis"] == kind:
                p["slowdown"] = plan["headline_slowdown"]


def run_verdict(doc: dict[str, Any]) -> dict[str, Any]:
    """The run report's verdict: apply the chosen plan, at its headline slowdown."""
    plan, run = doc["plan"], doc["run"]
    if not plan["available"]:
        return verdict(
            f"No plan to apply yet: make one with `placer recommend {run['id']} --dram-budget 50%`",
            None,
            None,
            None,
        )
    action = (
        f"Apply plan {plan['id']} ({plan['strategy']}, {pct(plan['budget_fraction'])} of "
        f"the footprint in DRAM) with `placer run --plan` or `placer plan export`"
    )
    value, basis = plan["headline_slowdown"], plan["headline_basis"]
    effect = None if value is None else f"expected {slow(value)} runtime over all-DRAM"
    risks = []
    if basis == "predicted":
        risks.append("the model's estimate, not checked against labels (`placer experiment`)")
    elif basis == "emulated":
        tier = (plan["label_provenance"] or {}).get("tier_spec")
        risks.append(f"emulated{f' for {tier}' if tier else ''}, not measured on a slow tier")
    predicted = plan["predicted_slowdown"]
    if basis != "predicted" and predicted is not None and value is not None:
        if abs(predicted - value) >= 0.005:
            risks.append(f"the model itself predicted {slow(predicted)}")
    if plan["slow_bytes"]:
        risks.append(f"{human_bytes(plan['slow_bytes'])} go to the slow tier")
    applied = plan["applied"]
    if not applied:
        risks.append("its binding is not yet verified (not applied)")
    else:
        share = applied[-1]["share_on_planned_node"]
        if share is not None and share < 0.99:
            risks.append(f"only {pct(share)} of its pages landed on the planned node")
    return verdict(
        action,
        effect,
        basis,
        "; ".join(risks) or None,
        plan_id=plan["id"],
        slowdown=value,
    )
