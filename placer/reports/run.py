"""The run (placement) report: objects, their heat over time, what a DRAM budget buys.

Sources, all read from the store: the run and its objects with the page-poison series
(*measured* on the profiling host), the newest labeling experiment of the run (per-object
penalties and plan runtimes, *measured* or *emulated* on a named tier spec) and the run's
stored plans (the model's *predicted* slowdown, and what was achieved when applied).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from placer.contracts.naming import site_chain, user_frames, wrapper_frames
from placer.errors import NotFoundError, PlacerError
from placer.placement import baselines, planner
from placer.placement.baselines import Candidate
from placer.placement.features import run_features
from placer.placement.registry import load_model
from placer.reports.base import ReportBuilder, absent, iso, provenance
from placer.reports.headline import place_plans, run_verdict
from placer.store.repository.hosts import hostname_of
from placer.store.repository.labels import (
    applied_plans,
    experiments_of_run,
    labels_of_experiment,
    plans_of_run,
)
from placer.store.repository.runs import (
    application_name,
    find_run,
    metrics_by_object,
    objects_with_sites_in_time_order,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Budgets of the DRAM-budget curve, as shares of the run's footprint.
BUDGETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Most objects drawn in the heatmap (the hottest by traffic); the table lists them all.
HEATMAP_ROWS = 24
HEATMAP_COLUMNS = 60
RANDOM_SEED = 0
#: Strategy names as :mod:`placer.placement.baselines` spells them, and their legends.
LABELS = {
    "model": "model plan",
    "density-greedy": "density greedy (Moura et al.)",
    "ecohmem-knapsack": "ecoHMEM knapsack",
    "size-threshold": "size threshold (memtier)",
    "first-touch": "first-touch (Linux)",
    "random": "random",
    "oracle": "oracle (labels)",
}


def _location(
    chain: list[str], site_hash: str, functions: list[str], wrappers: frozenset[str]
) -> str:
    """The site's first user frame (allocator, wrapper and container frames skipped)."""
    frames = user_frames(chain, functions, wrappers)
    return frames[0] if frames else f"site {site_hash[:12]}"


def _short(location: str, cwd: str) -> str:
    """``file:line`` for people: relative to the run's directory, else the last two parts."""
    if cwd and location.startswith(cwd.rstrip("/") + "/"):
        return location[len(cwd.rstrip("/")) + 1 :]
    parts = location.split("/")
    return "/".join(parts[-2:]) if len(parts) > 2 else location


def _fraction(value: float | None) -> float | None:
    """Budgets stored as shares (0.3) or percentages (30) -> share."""
    if value is None:
        return None
    return value / 100.0 if value > 1.0 else value


class RunReport(ReportBuilder):
    """``placer report RUN``."""

    kind = "run"

    def __init__(self, store: Any, run_id: int, *, seed: int = RANDOM_SEED) -> None:
        super().__init__(store)
        self.run_id = run_id
        self.seed = seed
        self._view_note = ""

    def title(self, doc: dict[str, Any]) -> str:
        return f"Placement report: run {doc['run']['id']} ({doc['run']['application']})"

    # ------------------------------------------------------------------------ collect
    def collect(self) -> dict[str, Any]:
        with self.store.session() as s:
            run = find_run(s, self.run_id)
            if run is None:
                raise NotFoundError(f"run {self.run_id} not found (see `placer runs`)")
            app_name = application_name(s, run.application_id)
            objs = objects_with_sites_in_time_order(s, run.id)
            metrics = metrics_by_object(s, run.id)
            experiments = experiments_of_run(s, run.id)
            # Measured labels beat emulated ones; the newest of each kind wins.
            measured = [e for e in experiments if not e.emulated]
            experiment = (measured or experiments)[-1] if experiments else None
            labels = labels_of_experiment(s, experiment.id) if experiment is not None else []
            plans = plans_of_run(s, run.id)
            # `placer run --plan` stores the applied plan on a run of its own (kind "plan")
            # whose inputs name the profiled run the plan was made from.
            applied = applied_plans(s, run.id, run.build_id)
            hostname = hostname_of(s, run.host_id)

            run_doc = {
                "id": run.id,
                "application": app_name if app_name is not None else "",
                "kind": run.kind,
                "command": list(run.command or []),
                "binary_path": run.binary_path,
                "build_id": run.build_id,
                "status": run.status,
                "exit_code": run.exit_code,
                "wall_seconds": run.wall_seconds,
                "started_at": iso(run.started_at),
                "host": hostname,
                "signals": sorted((run.signals or {}).keys()),
            }
            objects = self._objects(objs, metrics, run.cwd or "")
            label_info = self._labels(experiment, labels)
            self._view_note = "no placement view of this run: no model predictions"
            try:
                view = self._placement_view(s, run.id) if objects else None
            except Exception as exc:  # noqa: BLE001 - report what we can without it
                view = None
                self._view_note = (
                    f"placer.placement could not read this run ({exc}): no model predictions; "
                    f"the curve is computed per object"
                )
            scores = (view or {}).get("scores") or {}
            for o in objects:
                o["predicted_criticality"] = scores.get(o["id"])
                o["predicted_penalty_share"] = ((view or {}).get("pred") or {}).get(o["id"])
            cands = self._candidates(objects)
            table = self._table(run_doc, objects, cands, label_info, view, hostname)
            heat = self._heatmap(objects, hostname)
            curve = self._curve(run_doc, objects, cands, label_info, plans, view, hostname)
            plan = self._plan(plans, applied, objects, label_info, view, hostname)
        place_plans(curve, plan)
        return {
            "run": run_doc,
            "objects": table,
            "heatmap": heat,
            "budget_curve": curve,
            "plan": plan,
        }

    def verdict(self, doc: dict[str, Any]) -> dict[str, Any]:
        return run_verdict(doc)

    # ------------------------------------------------------------------------ objects
    def _objects(
        self, objs: list[Any], series: dict[int, list[Any]], cwd: str
    ) -> list[dict[str, Any]]:
        out = []
        wrappers = wrapper_frames(site_chain(site) for site in {s.id: s for _, s in objs}.values())
        for o, site in objs:
            summ = o.summary or {}
            ms = series.get(o.id, [])
            sampled = sum(m.sampled_pages for m in ms)
            touched = sum(m.touched_pages for m in ms)
            written = sum(m.written_pages for m in ms)
            density = touched / sampled if sampled else summ.get("density")
            write_share = written / touched if touched else summ.get("write_share")
            llc = sum(m.perf_mem_llc_misses for m in ms)
            mem_samples = sum(m.perf_mem_samples for m in ms)
            end_ns = (
                o.free_ns
                if o.free_ns is not None
                else max([m.end_ns for m in ms] + [o.alloc_ns + int(summ.get("lifetime_ns", 0))])
            )
            lifetime_ns = summ.get("lifetime_ns", max(end_ns - o.alloc_ns, 0))
            chain, functions = site_chain(site)
            location = _location(chain, site.site_hash, functions, wrappers)
            out.append(
                {
                    "id": o.id,
                    "alloc_seq": o.alloc_seq,
                    "chunk_index": o.chunk_index,
                    "chunk_count": o.chunk_count,
                    "site": {
                        "id": site.id,
                        "hash": site.site_hash,
                        "language": site.language,
                        "location": location,
                        "short": _short(location, cwd),
                        "chain": chain,
                    },
                    "size_bytes": o.size_bytes,
                    "alloc_ns": o.alloc_ns,
                    "end_ns": end_ns,
                    "lifetime_s": lifetime_ns / 1e9,
                    "alive_at_exit": o.free_ns is None,
                    "density": density,
                    "write_share": write_share,
                    "llc_misses": llc if mem_samples else None,
                    "series": [
                        {
                            "start_ns": m.start_ns,
                            "end_ns": m.end_ns,
                            "density": m.touched_pages / m.sampled_pages
                            if m.sampled_pages
                            else None,
                        }
                        for m in ms
                    ],
                }
            )
        return out

    def _labels(self, experiment: Any, labels: list[Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "experiment": experiment,
            "penalties": {},
            "plan_points": defaultdict(list),
        }
        if experiment is None:
            return info
        for lab in labels:
            if lab.kind == "object" and lab.object_id is not None:
                info["penalties"][lab.object_id] = float(lab.penalty_seconds)
            elif lab.kind == "plan" and lab.budget_fraction is not None:
                info["plan_points"][lab.strategy or "plan"].append(
                    (
                        _fraction(lab.budget_fraction),
                        float(lab.runtime_seconds),
                        float(lab.runtime_spread or 0.0),
                    )
                )
        return info

    @staticmethod
    def _placement_view(session: Session, run_id: int) -> dict[str, Any]:
        """The planner's groups and the model's predictions.

        Uses the same code as ``placer recommend``; a model that cannot be loaded leaves
        the predictions out with a note instead of failing the report.
        """
        table = run_features(session, run_id)
        grouped = planner.groups(table)
        view: dict[str, Any] = {
            "table": table,
            "grouped": grouped,
            "footprint": planner.footprint(grouped),
            "model": None,
            "model_note": None,
            "pred": {},
            "scores": {},
        }
        try:
            loaded = load_model(session)
            pred = loaded.model.predict_penalty(table)
            scores = loaded.model.rank_scores(table)
        except PlacerError as exc:
            view["model_note"] = str(exc)
            return view
        except Exception as exc:  # noqa: BLE001 - a broken model must not break the report
            view["model_note"] = f"the placement model could not be used: {exc}"
            return view
        ids = [int(x) for x in table["object_id"]]
        view["model"] = loaded.version
        view["model_source"] = loaded.source
        view["pred"] = {o: float(v) for o, v in zip(ids, pred, strict=True) if finite(v)}
        view["scores"] = {o: float(v) for o, v in zip(ids, scores, strict=True) if finite(v)}
        return view

    @staticmethod
    def _candidates(objects: list[dict[str, Any]]) -> list[Candidate]:
        """Objects (already in allocation order) as the strategy registry's candidates.

        Accesses are perf-mem LLC misses when the run has them, else density x bytes.
        """
        misses = any(o["llc_misses"] for o in objects)
        return [
            Candidate(
                id=o["id"],
                weight=int(o["size_bytes"]),
                alloc_order=i,
                accesses=float(o["llc_misses"] or 0)
                if misses
                else (o["density"] or 0.0) * int(o["size_bytes"]),
                lifetimes=(planner.lifetime(o["alloc_ns"], o["end_ns"], o["size_bytes"]),),
            )
            for i, o in enumerate(objects)
        ]

    @staticmethod
    def _label_provenance(experiment: Any, hostname: str | None, method: str) -> dict[str, Any]:
        return provenance(
            "emulated" if experiment.emulated else "measured",
            tier_spec=experiment.tier_spec_name,
            source=method,
            host=hostname,
            experiment_id=experiment.id,
        )

    def _table(
        self,
        run_doc: dict[str, Any],
        objects: list[dict[str, Any]],
        cands: list[Candidate],
        label_info: dict[str, Any],
        view: dict[str, Any] | None,
        hostname: str | None,
    ) -> dict[str, Any]:
        if not objects:
            return absent(
                f"run {run_doc['id']} has no objects in the store (nothing over the shim's "
                f"size threshold, or the run was not profiled)",
                rows=[],
                baselines=[],
            )
        names = ["density-greedy", "size-threshold", "first-touch", "random"]
        if label_info["penalties"]:
            names.append("oracle")
        values = label_info["penalties"]
        rank_maps = {
            n: baselines.strategy(n, seed=self.seed, values=values).ranks(cands) for n in names
        }
        scores = (view or {}).get("scores") or {}
        if scores:
            order = sorted(scores, key=lambda oid: (-scores[oid], oid))
            rank_maps = {"model": {oid: i + 1 for i, oid in enumerate(order)}, **rank_maps}
            names = ["model", *names]
        rows = []
        for o in objects:
            rows.append(
                {
                    **{
                        k: o[k]
                        for k in (
                            "id",
                            "site",
                            "chunk_index",
                            "chunk_count",
                            "size_bytes",
                            "lifetime_s",
                            "alive_at_exit",
                            "density",
                            "write_share",
                            "llc_misses",
                            "predicted_criticality",
                            "predicted_penalty_share",
                        )
                    },
                    "penalty_s": label_info["penalties"].get(o["id"]),
                    "ranks": {n: rank_maps[n].get(o["id"]) for n in names},
                }
            )
        key = "model" if scores else "density-greedy"
        rows.sort(key=lambda r: (r["ranks"][key] or len(rows) + 1, r["id"]))
        exp = label_info["experiment"]
        notes = []
        if view is None:
            notes.append(self._view_note)
        elif view.get("model_note"):
            notes.append(view["model_note"])
        if exp is None:
            notes.append("no labels for this run: no oracle rank, no penalties")
        return {
            "available": True,
            "note": "; ".join(notes) or None,
            "provenance": provenance(
                "measured",
                source="page-poison access sampling"
                + (" and perf mem" if any(o["llc_misses"] is not None for o in objects) else ""),
                host=hostname,
            ),
            "model": (view or {}).get("model"),
            "penalty_provenance": None
            if exp is None
            else self._label_provenance(exp, hostname, "per-object labels"),
            "total": len(rows),
            "footprint_bytes": sum(int(o["size_bytes"]) for o in objects),
            "baselines": names,
            "sorted_by": key,
            "random_seed": self.seed,
            "rows": rows,
        }

    # ------------------------------------------------------------------------ heatmap
    def _heatmap(self, objects: list[dict[str, Any]], hostname: str | None) -> dict[str, Any]:
        sampled = [o for o in objects if any(p["density"] is not None for p in o["series"])]
        if not sampled:
            return absent(
                "no access samples for this run (page-poison sampling was off or the run "
                "ended before the first sample)"
            )
        t0 = min(o["alloc_ns"] for o in objects)
        t1 = max([p["end_ns"] for o in sampled for p in o["series"]] + [t0 + 1])
        cols = min(HEATMAP_COLUMNS, max(len(o["series"]) for o in sampled))
        width = (t1 - t0) / cols
        hottest = sorted(sampled, key=lambda o: -((o["density"] or 0.0) * o["size_bytes"]))[
            :HEATMAP_ROWS
        ]
        hottest.sort(key=lambda o: (-(o["density"] or 0.0), o["id"]))
        rows = []
        for o in hottest:
            chunk = f" [{o['chunk_index'] + 1}/{o['chunk_count']}]" if o["chunk_count"] > 1 else ""
            touched = [0.0] * cols
            weight = [0] * cols
            for p in o["series"]:
                if p["density"] is None:
                    continue
                mid = (p["start_ns"] + p["end_ns"]) / 2
                c = min(cols - 1, max(0, int((mid - t0) / width)))
                touched[c] += p["density"]
                weight[c] += 1
            rows.append(
                {
                    "object_id": o["id"],
                    "label": o["site"]["location"] + chunk,
                    "short": o["site"]["short"] + chunk,
                    "values": [touched[c] / weight[c] if weight[c] else None for c in range(cols)],
                }
            )
        notes = []
        if len(sampled) > HEATMAP_ROWS:
            notes.append(
                f"the {HEATMAP_ROWS} objects with the most traffic of {len(sampled)} sampled"
            )
        if len(sampled) < len(objects):
            notes.append(
                f"{len(objects) - len(sampled)} of {len(objects)} objects were never "
                f"sampled (too short-lived or too small for a sample period)"
            )
        return {
            "available": True,
            "note": "; ".join(notes) or None,
            "provenance": provenance(
                "measured", source="page-poison sampling: touched / sampled pages", host=hostname
            ),
            "time_s": [round(c * width / 1e9, 6) for c in range(cols + 1)],
            "rows": rows,
        }

    # ------------------------------------------------------------------------ curve
    def _curve(
        self,
        run_doc: dict[str, Any],
        objects: list[dict[str, Any]],
        cands: list[Candidate],
        label_info: dict[str, Any],
        plans: list[Any],
        view: dict[str, Any] | None,
        hostname: str | None,
    ) -> dict[str, Any]:
        exp = label_info["experiment"]
        base = (exp.baseline_seconds if exp is not None else None) or run_doc["wall_seconds"]
        penalties = label_info["penalties"]
        labeled = bool(penalties) and bool(base)
        pred = (view or {}).get("pred") or {}
        if not objects:
            return absent("the run has no objects: no DRAM budget to price")
        if not labeled and not pred and not label_info["plan_points"]:
            return absent(
                "no labels for this run (run `placer experiment`) and no placement model "
                "(run `placer train`): nothing to price a DRAM budget with"
            )
        series: list[dict[str, Any]] = []
        if view is not None:
            footprint = int(view["footprint"])
            series += self._curve_placement(view, penalties, base, labeled)
            grouping = "site/chunk groups of the planner (weight = peak live bytes)"
        else:
            footprint = baselines.footprint(cands)
            grouping = "objects (the planner's groups are not available for this run)"
            if labeled:
                shares = {o: max(v, 0.0) / base for o, v in penalties.items()}
                members = [c.members() for c in cands]
                strategies = baselines.heuristics(self.seed)
                strategies.append(baselines.strategy("oracle", values=penalties))
                for strat in strategies:
                    pts = []
                    for b in BUDGETS:
                        dram = strat.pick(cands, int(b * footprint))
                        pts.append(
                            {
                                "budget_fraction": b,
                                "slowdown": planner.price(members, dram, shares),
                            }
                        )
                    series.append(
                        {
                            "strategy": strat.name,
                            "label": LABELS[strat.name],
                            "priced_by": "labels",
                            "points": pts,
                        }
                    )
        if exp is not None and label_info["plan_points"] and base:
            for name, pts in sorted(label_info["plan_points"].items()):
                series.append(
                    {
                        "strategy": name,
                        "label": f"{LABELS.get(name, name)}: runtime "
                        + ("emulated" if exp.emulated else "measured"),
                        "priced_by": "plan-labels",
                        "points": [
                            {"budget_fraction": b, "slowdown": rt / base, "spread": spread / base}
                            for b, rt, spread in sorted(pts)
                        ],
                    }
                )
        stored = [
            {
                "plan_id": p.id,
                "strategy": p.strategy,
                "budget_fraction": p.budget_bytes / footprint if footprint else None,
                "budget_bytes": p.budget_bytes,
                "predicted_slowdown": p.predicted_slowdown,
            }
            for p in plans
            if p.predicted_slowdown is not None
        ]
        if labeled:
            prov = self._label_provenance(
                exp,
                hostname,
                "strategies' slow objects priced with the run's per-object labels "
                "(additive penalties, as the emulator adds them)",
            )
        elif label_info["plan_points"]:
            prov = self._label_provenance(exp, hostname, "plan runtimes of the experiment")
        else:
            prov = provenance(
                "predicted",
                source=f"strategies priced with the placement model's predicted penalties "
                f"({(view or {}).get('model')})",
                host=hostname,
            )
        notes = []
        if not labeled:
            notes.append(
                "no per-object labels for this run: no oracle"
                + ("; strategies are priced by the model's predictions" if pred else "")
            )
        return {
            "available": bool(series),
            "note": "; ".join(notes) or None,
            "provenance": prov,
            "model": (view or {}).get("model"),
            "grouping": grouping,
            "footprint_bytes": footprint,
            "base_seconds": base,
            "budgets": list(BUDGETS),
            "random_seed": self.seed,
            "series": series,
            "stored_plans": stored,
        }

    def _curve_placement(
        self,
        view: dict[str, Any],
        penalties: dict[int, float],
        base: float | None,
        labeled: bool,
    ) -> list[dict[str, Any]]:
        """Each baseline (and the model, the oracle) on the planner's groups, per budget."""
        grouped = view["grouped"]
        footprint = int(view["footprint"])
        pred = view["pred"]
        truth = {o: v / base for o, v in penalties.items()} if labeled and base else {}
        pricing = truth or pred
        strategies = list(baselines.heuristics(self.seed))
        if truth:
            strategies.append(baselines.ValueKnapsack("oracle", truth))
        model = baselines.ValueKnapsack("model", pred) if pred else None
        if model is not None:
            strategies.insert(0, model)
        series = []
        masks: dict[str, list[Any]] = {}
        cands = baselines.group_candidates(grouped)  # once: a run may have 10,000 sites
        # each group's value summed once per pricing, not once per strategy and budget
        priced = planner.group_values(grouped, pricing).tolist()
        for strat in strategies:
            pts = []
            for b in BUDGETS:
                mask = strat.pick(cands, int(b * footprint))
                masks.setdefault(strat.name, []).append(mask)
                pts.append({"budget_fraction": b, "slowdown": planner.slowdown(priced, mask)})
            series.append(
                {
                    "strategy": strat.name,
                    "label": LABELS.get(strat.name, strat.name),
                    "priced_by": "labels" if truth else "model",
                    "points": pts,
                }
            )
        if model is not None and truth:
            # What the model itself predicts for its plan, next to what the labels say.
            predicted = planner.group_values(grouped, pred).tolist()
            series.append(
                {
                    "strategy": "model-predicted",
                    "label": "model plan: model's own prediction",
                    "priced_by": "model",
                    "points": [
                        {"budget_fraction": b, "slowdown": planner.slowdown(predicted, m)}
                        for b, m in zip(BUDGETS, masks["model"], strict=True)
                    ],
                }
            )
        return series

    @staticmethod
    def _is_model(plan: Any) -> bool:
        return plan.model_id is not None or plan.strategy in ("model", "ranker", "lightgbm")

    # ------------------------------------------------------------------------ plan
    def _plan(
        self,
        plans: list[Any],
        applied: list[tuple[Any, Any]],
        objects: list[dict[str, Any]],
        label_info: dict[str, Any],
        view: dict[str, Any] | None,
        hostname: str | None,
    ) -> dict[str, Any]:
        if not plans and not applied:
            return absent("no plan is stored for this run (run `placer recommend`)")
        if plans:
            # only the chosen plan's decisions are read: a plan of 10,000 sites is 10,000 rows
            models = [p for p in plans if self._is_model(p)]
            plan = (models or plans)[-1]
            decisions = list(plan.decisions)
        else:
            plan, decisions = applied[-1][0], list(applied[-1][0].decisions)
        footprint = (
            int(view["footprint"])
            if view is not None
            else sum(int(o["size_bytes"]) for o in objects)
        )
        sites = {o["site"]["id"]: o["site"] for o in objects}
        doc = dict(plan.document or {})
        exp = label_info["experiment"]
        base = exp.baseline_seconds if exp is not None else None
        priced = None
        if base and label_info["penalties"]:
            slow_keys = {(d.site_id, d.chunk_index) for d in decisions if d.tier == "slow"}
            named = {(d.site_id, d.chunk_index) for d in decisions}
            default_slow = str((doc.get("nodes") or {}).get("default_tier", "slow")) == "slow"
            lost = 0.0
            for o in objects:
                key = (o["site"]["id"], o["chunk_index"])
                if key in slow_keys or (key not in named and default_slow):
                    lost += max(label_info["penalties"].get(o["id"], 0.0), 0.0)
            priced = (base + lost) / base
        budget = doc.get("budget") or {}
        label_prov = (
            None
            if priced is None
            else self._label_provenance(exp, hostname, "plan priced with per-object labels")
        )
        return {
            "available": True,
            # The one number the report leads with: labels when there are any, else the
            # model's prediction; the KPI, the verdict and this section all show it.
            "headline_slowdown": priced if priced is not None else plan.predicted_slowdown,
            "headline_basis": label_prov["kind"] if label_prov else "predicted",
            "note": None if applied else "the plan has not been applied yet (`placer run --plan`)",
            "id": plan.id,
            "strategy": plan.strategy,
            "model_id": plan.model_id,
            "model": (doc.get("model") or {}).get("version"),
            "build_id": plan.build_id,
            "budget_bytes": plan.budget_bytes,
            "budget_fraction": budget.get("fraction")
            if budget.get("fraction") is not None
            else (plan.budget_bytes / footprint if footprint else None),
            "predicted_slowdown": plan.predicted_slowdown,
            "baselines_predicted": doc.get("baselines"),
            "nodes": doc.get("nodes"),
            "label_priced_slowdown": priced,
            "label_provenance": label_prov,
            "created_at": iso(plan.created_at),
            "dram_bytes": sum(d.size_bytes for d in decisions if d.tier == "dram"),
            "slow_bytes": sum(d.size_bytes for d in decisions if d.tier == "slow"),
            "decisions": [
                {
                    "site": {
                        "id": d.site_id,
                        "location": sites[d.site_id]["location"]
                        if d.site_id in sites
                        else f"site {d.site_id}",
                        "short": sites[d.site_id]["short"]
                        if d.site_id in sites
                        else f"site {d.site_id}",
                        "chain": sites[d.site_id]["chain"] if d.site_id in sites else [],
                    },
                    "chunk_index": d.chunk_index,
                    "tier": d.tier,
                    "numa_node": d.numa_node,
                    "size_bytes": d.size_bytes,
                    "score": d.score,
                    "reason": d.reason,
                }
                for d in sorted(decisions, key=lambda d: (d.tier != "dram", -d.score, d.id))
            ],
            "applied": [self._applied(ap, prun, hostname) for ap, prun in applied],
            "other_plans": [
                {
                    "id": p.id,
                    "strategy": p.strategy,
                    "budget_bytes": p.budget_bytes,
                    "predicted_slowdown": p.predicted_slowdown,
                }
                for p in plans
                if p.id != plan.id
            ],
        }

    @staticmethod
    def _applied(plan: Any, prun: Any, hostname: str | None) -> dict[str, Any]:
        """What ``placer run --plan`` achieved: binds and pages seen on the planned nodes."""
        got = dict(plan.achieved or {})
        nodes = (plan.document or {}).get("nodes") or {}
        raw_sites = got.get("sites")
        sites: dict[str, Any] = raw_sites if isinstance(raw_sites, dict) else {}
        return {
            "plan_id": plan.id,
            "run_id": prun.id,
            "status": prun.status,
            "exit_code": prun.exit_code,
            "wall_seconds": prun.wall_seconds,
            "budget_bytes": plan.budget_bytes,
            "predicted_slowdown": plan.predicted_slowdown,
            "share_on_planned_node": got.get("share_on_planned_node"),
            "pages_seen": got.get("pages_seen"),
            "pages_on_planned_node": got.get("pages_on_planned_node"),
            "binds_ok": sum(int(v.get("binds_ok", 0)) for v in sites.values()),
            "binds_failed": sum(int(v.get("binds_failed", 0)) for v in sites.values()),
            "sites": [
                {
                    "site": str(k),
                    "node": v.get("node"),
                    "allocations": v.get("allocations"),
                    "binds_ok": v.get("binds_ok"),
                    "binds_failed": v.get("binds_failed"),
                    "share_on_planned_node": v.get("share_on_planned_node"),
                }
                for k, v in sorted(sites.items())
                if isinstance(v, dict)
            ],
            "note": nodes.get("note"),
            "provenance": provenance(
                "measured",
                source="plan applied with `placer run --plan`: mbind results and "
                "/proc/PID/numa_maps pages"
                + (
                    " (no slow tier on this host: runtime effect is emulated, not measured)"
                    if nodes.get("note")
                    else ""
                ),
                host=hostname,
            ),
        }


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
