"""Training sets and leave-one-application-out evaluation of plans, baselines and the oracle.

A plan's *slowdown* is its runtime over the all-DRAM runtime, scored with the labels: each
object's penalty alone in the slow tier, summed over the objects a plan leaves slow (the
emulator's own composition rule: runtime = base + sum of penalties). *Degradation* is
slowdown - 1. For each application A, the model is trained on every other application's
runs and scored on A's runs, so it never saw the program it is judged on.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from placer.errors import InvalidInputError
from placer.placement import baselines, planner
from placer.placement.features import run_features
from placer.placement.labels import RunLabels, load_labels
from placer.placement.model import PlacementModel

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_BUDGETS = (30, 50, 70)


@dataclass
class Dataset:
    """Labeled objects of several runs: features, label shares, run (query) and app."""

    table: pd.DataFrame
    labels: list[RunLabels]
    tables: dict[int, pd.DataFrame]

    @property
    def shares(self) -> pd.Series:
        return self.table["label_share"]

    @property
    def groups(self) -> pd.Series:
        return self.table["run_id"]

    def apps(self) -> list[str]:
        return sorted({lab.app for lab in self.labels})

    def subset(self, keep: set[str]) -> Dataset:
        labs = [lab for lab in self.labels if lab.app in keep]
        runs = {lab.run_id for lab in labs}
        return Dataset(self.table[self.table["run_id"].isin(runs)].reset_index(drop=True), labs,
                       {r: t for r, t in self.tables.items() if r in runs})


def build_dataset(session: Any, labels: list[RunLabels]) -> Dataset:
    import pandas as pd

    if not labels:
        raise InvalidInputError(
            "no labeled runs in the store: label profiled runs first "
            "(`placer experiment --suite examples`, or `placer experiment RUN`)"
        )
    tables: dict[int, pd.DataFrame] = {}
    parts = []
    kept = []
    for lab in labels:
        try:
            t = run_features(session, lab.run_id)
        except InvalidInputError:
            continue  # a run without objects has nothing to learn from
        shares = lab.shares()
        t = t.copy()
        t["label_share"] = t["object_id"].map(shares)
        t["app"] = lab.app
        tables[lab.run_id] = t
        parts.append(t[t["label_share"].notna()])
        kept.append(lab)
    if not parts:
        raise InvalidInputError("the labeled runs have no objects to learn from")
    table = pd.concat(parts, ignore_index=True)
    return Dataset(table, kept, tables)


def fit(data: Dataset, params: dict[str, Any] | None = None) -> PlacementModel:
    model = PlacementModel(**(params or {}))
    model.fit(data.table, data.shares, data.groups)
    training: dict[str, Any] = model.meta_["training"]
    training.update({
        "runs_detail": [lab.describe() for lab in data.labels],
        "apps": data.apps(),
        "label_sources": sorted({"emulated" if lab.emulated else "measured"
                                 for lab in data.labels}),
    })
    return model


def _ndcg_top1(table: pd.DataFrame, scores: Any, k: int = 5) -> tuple[float | None, float | None]:
    import numpy as np
    from sklearn.metrics import ndcg_score

    truth = table["label_share"].to_numpy(dtype=float)
    truth = np.nan_to_num(truth, nan=0.0)
    if len(truth) < 2 or truth.max() <= 0:
        return None, None
    ndcg = float(ndcg_score([truth], [scores], k=k))
    top = int(np.argmax(scores))
    return ndcg, float(truth[top] >= truth.max() - 1e-12)


def score_run(table: pd.DataFrame, lab: RunLabels, model: PlacementModel | None,
              budgets: list[int], seed: int = 0) -> list[dict[str, Any]]:
    """Slowdown per budget and strategy of one labeled run (labels score every plan)."""
    grouped = planner.groups(table)
    total = planner.footprint(grouped)
    truth = lab.shares()
    strategies: list[baselines.Strategy] = []
    if model is not None:
        pred = {int(o): float(v) for o, v in
                zip(table["object_id"], model.predict_penalty(table), strict=True)}
        strategies.append(baselines.ValueKnapsack("model", pred))
    strategies += baselines.heuristics(seed)
    strategies.append(baselines.ValueKnapsack("oracle", truth))
    rows = []
    for pct in budgets:
        cap = int(total * pct / 100)
        slow = {s.name: planner.plan_value(grouped, s.choose(grouped, cap), truth)
                for s in strategies}
        all_slow = planner.plan_value(grouped, grouped["weight"].to_numpy() < 0, truth)
        rows.append({"app": lab.app, "run": lab.run_id, "budget": pct, "budget_bytes": cap,
                     "footprint_bytes": total, "groups": int(len(grouped)),
                     "all_slow": round(all_slow, 6),
                     "slowdown": {k: round(v, 6) for k, v in slow.items()}})
    return rows


def evaluate(data: Dataset, budgets: list[int], params: dict[str, Any] | None = None,
             seed: int = 0) -> dict[str, Any]:
    """Leave-one-application-out: per budget and app, every strategy's slowdown; ranking."""
    apps = data.apps()
    if len(apps) < 2:
        raise InvalidInputError(
            f"leave-one-application-out needs labeled runs of at least 2 applications "
            f"(have: {', '.join(apps) or 'none'})")
    rows: list[dict[str, Any]] = []
    ranking: dict[str, dict[str, float | None]] = {}
    for app in apps:
        model = fit(data.subset(set(apps) - {app}), params)
        nd: list[float] = []
        hits: list[float] = []
        for lab in data.labels:
            if lab.app != app:
                continue
            table = data.tables[lab.run_id]
            rows += score_run(table, lab, model, budgets, seed)
            labeled = table[table["label_share"].notna()]
            n, h = _ndcg_top1(labeled, model.rank_scores(labeled))
            if n is not None and h is not None:
                nd.append(n)
                hits.append(h)
        ranking[app] = {"ndcg@5": statistics.fmean(nd) if nd else None,
                        "top1": statistics.fmean(hits) if hits else None}
    choice = [r for r in rows if r["groups"] > 1]
    return {"apps": apps, "budgets": budgets, "rows": rows, "ranking": ranking,
            "summary": summarize(rows, ranking),
            "summary_runs_with_a_choice": summarize(choice, ranking) if choice else None}


def summarize(rows: list[dict[str, Any]], ranking: dict[str, dict[str, Any]]
              ) -> dict[str, Any]:
    """Mean degradation per strategy (per budget and overall) and the goal checks."""
    names = list(rows[0]["slowdown"]) if rows else []
    per_budget: dict[str, dict[str, float]] = {}
    for b in sorted({r["budget"] for r in rows}):
        sel = [r for r in rows if r["budget"] == b]
        per_budget[str(b)] = {n: round(statistics.fmean(r["slowdown"][n] - 1 for r in sel), 6)
                              for n in names}
    overall = {n: round(statistics.fmean(r["slowdown"][n] - 1 for r in rows), 6)
               for n in names} if rows else {}
    per_app: dict[str, dict[str, dict[str, float]]] = {}
    for app in sorted({r["app"] for r in rows}):
        for b in sorted({r["budget"] for r in rows}):
            sel = [r for r in rows if r["app"] == app and r["budget"] == b]
            per_app.setdefault(app, {})[str(b)] = {
                n: round(statistics.fmean(r["slowdown"][n] for r in sel), 6) for n in names}
    out: dict[str, Any] = {"mean_degradation_by_budget": per_budget,
                           "mean_degradation": overall, "per_app_slowdown": per_app}
    if "model" in overall:
        dg, orc, m = overall["density-greedy"], overall["oracle"], overall["model"]
        out["model_vs_density_greedy"] = round(1 - m / dg, 6) if dg > 0 else None
        mean_slow = {n: statistics.fmean(r["slowdown"][n] for r in rows) for n in names}
        out["model_over_oracle_slowdown"] = round(mean_slow["model"] / mean_slow["oracle"] - 1,
                                                  6)
        out["goal"] = {
            "degradation_20pct_below_density_greedy": bool(dg > 0 and m <= 0.8 * dg),
            "within_5pct_of_oracle": bool(mean_slow["model"] <= 1.05 * mean_slow["oracle"]),
        }
        _ = orc
    nd = [v["ndcg@5"] for v in ranking.values() if v.get("ndcg@5") is not None]
    t1 = [v["top1"] for v in ranking.values() if v.get("top1") is not None]
    out["ndcg@5"] = round(statistics.fmean(nd), 6) if nd else None
    out["top1"] = round(statistics.fmean(t1), 6) if t1 else None
    return out


def feature_study(data: Dataset, budgets: list[int], sets: dict[str, list[str]],
                  params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """LOAO evaluation of the model trained on each feature set (single features included)."""
    out = []
    for name, feats in sets.items():
        p = dict(params or {}, features=list(feats))
        res = evaluate(data, budgets, p)
        s = res["summary"]
        out.append({"set": name, "features": list(feats),
                    "mean_degradation": s["mean_degradation"]["model"],
                    "vs_density_greedy": s.get("model_vs_density_greedy"),
                    "over_oracle": s.get("model_over_oracle_slowdown"),
                    "ndcg@5": s["ndcg@5"], "top1": s["top1"]})
    if out:
        best = min(r["mean_degradation"] for r in out)
        for r in out:
            r["difference_to_best"] = round(r["mean_degradation"] - best, 6)
    return out


def training_labels(session: Any, source: str, tier: str | None) -> Dataset:
    return build_dataset(session, load_labels(session, source, tier))
