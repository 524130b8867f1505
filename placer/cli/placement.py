"""``placer train | evaluate | recommend | run``: the placement model and its plans.

Heavy libraries (lightgbm, pandas) are imported inside the handlers; the store is read and
written through :mod:`placer.store.repository`.
Documents printed with ``--format json`` are described in docs/cli.md (Placement).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from placer.act import bind as apply
from placer.collectors.profile.session import prepare
from placer.daemon.client import close_job, register_self
from placer.errors import InvalidInputError
from placer.placement import evaluation
from placer.placement.features import FEATURE_SETS, FEATURES
from placer.placement.labels import load_labels
from placer.placement.planfile import (
    check_build_id,
    parse_shim_lines,
    python_bindings,
    python_native_sites,
    read_plan,
    split_sites,
    write_plan,
)
from placer.placement.recommend import Nodes, host_nodes
from placer.placement.recommend import recommend as recommend_plan
from placer.placement.registry import load_model, resolve_model, save_model
from placer.store.repository.labels import NewDecision, add_plan, trained_model_by_id
from placer.store.repository.runs import add_run, site_ids_by_hash
from placer.tiers.sysfs import detect_nodes


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
    )
    _label_options(p)
    p.add_argument("--name", default="placement", help="model name (versions count up)")
    p.add_argument(
        "--no-select",
        action="store_true",
        help="skip choosing the model settings by leave-one-application-out "
        "(use the first candidate's)",
    )
    p.set_defaults(handler=train)

    p = sub.add_parser(
        "evaluate",
        parents=[common],
    )
    p.add_argument("--budgets", default="30,50,70", help="DRAM budgets in %% of footprint")
    _label_options(p)
    p.add_argument(
        "--features",
        action="store_true",
        help="feature study: train on each single feature and on feature sets",
    )
    p.add_argument(
        "--no-select",
        action="store_true",
        help="evaluate the first candidate's settings instead of choosing them in "
        "each fold (faster)",
    )
    p.add_argument(
        "--model",
        metavar="default|ID|NAME@VERSION",
        help="score this model as it is (the shipped default, or a stored one by the id "
        "`placer train` prints) instead of leave-one-application-out training",
    )
    p.add_argument(
        "--apps",
        metavar="A,B",
        help="only these applications (program names, as `labels` lists them); "
        "leave-one-application-out still trains on all the others",
    )
    p.set_defaults(handler=evaluate)

    p = sub.add_parser("recommend", parents=[common])
    p.add_argument("run", type=int, metavar="RUN", help="profiled run id")
    p.add_argument(
        "--dram-budget",
        required=True,
        metavar="BUDGET",
        help="share of the run's footprint (50%%) or a size (8GiB)",
    )
    p.add_argument("-o", "--output", type=Path, help="write the plan file here")
    p.add_argument("--dram-node", type=int, help="DRAM NUMA node (default: detected)")
    p.add_argument("--slow-node", type=int, help="slow-tier NUMA node (default: detected)")
    p.add_argument("--top", type=int, default=15, help="ranked objects to list")
    p.set_defaults(handler=recommend)

    p = sub.add_parser("run", parents=[common])
    p.add_argument("--plan", required=True, type=Path, help="plan file (placer recommend -o)")
    p.add_argument(
        "--force",
        action="store_true",
        help="apply a plan made for another build of the program or on another host",
    )
    p.add_argument("--name", help="application name (default: the plan's)")
    p.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ARGS",
        help="the program to run with the plan and its arguments",
    )
    p.set_defaults(handler=run)


def _label_options(p: argparse.ArgumentParser) -> None:
    """The labels a model learns from or is scored on (train and evaluate alike)."""
    p.add_argument(
        "--from-labels",
        choices=["measured", "emulated", "all"],
        default="all",
        help="which labels to use (all: measured preferred per run; default all)",
    )
    p.add_argument(
        "--tier",
        default="optane",
        metavar="optane|cxl|FILE",
        help="tier spec of the emulated labels to use (default optane)",
    )


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


# ----------------------------------------------------------------------------- train
def train(args: argparse.Namespace, ctx: Any) -> int:
    store = ctx.open_store()
    with store.session() as s:
        data = evaluation.build_dataset(s, load_labels(s, args.from_labels, args.tier))
        with ctx.status(f"training on {len(data.labels)} labeled runs"):
            chosen, params, inner = evaluation.choose(data, select=not args.no_select)
            model = evaluation.fit(data, params)
        model.meta_["selection"] = {"chosen": chosen, "inner_degradation": inner}
        loaded = save_model(s, model, args.name)
    doc = {
        "model": loaded.describe(),
        "training": model.meta_["training"],
        "selection": model.meta_["selection"],
        "label_source": args.from_labels,
        "tier": args.tier,
    }

    def render(d: dict[str, Any]) -> None:
        t = d["training"]
        print(
            f"trained {d['model']['version']} on {t['objects']} objects of {t['runs']} runs "
            f"({', '.join(t['apps'])}); labels: {', '.join(t['label_sources'])}; "
            f"settings: {d['selection']['chosen']}"
        )

    ctx.emit(doc, render)
    return 0


# -------------------------------------------------------------------------- evaluate
def _budgets(text: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InvalidInputError(f"--budgets {text!r}: give percentages like 30,50,70") from None
    if not out or any(not 0 < b < 100 for b in out):
        raise InvalidInputError(f"--budgets {text!r}: each budget must be between 1 and 99")
    return out


def evaluate(args: argparse.Namespace, ctx: Any) -> int:
    budgets = _budgets(args.budgets)
    apps = [a.strip() for a in (args.apps or "").split(",") if a.strip()] or None
    if args.model is not None and (args.features or args.no_select):
        raise InvalidInputError(
            "--model scores a trained model as it is: --features and --no-select train models"
        )
    store = ctx.open_store()
    with store.session() as s:
        loaded = resolve_model(s, args.model) if args.model is not None else None
        data = evaluation.training_labels(s, args.from_labels, args.tier)
    with ctx.status("evaluating: leave-one-application-out folds"):
        if loaded is not None:
            doc = evaluation.score_model(data, loaded.model, budgets, apps=apps)
            doc["model"] = loaded.describe()
        else:
            candidates = None if args.no_select else evaluation.CANDIDATES
            doc = evaluation.evaluate(data, budgets, candidates=candidates, apps=apps)
    doc.update(
        {
            "label_source": args.from_labels,
            "tier": args.tier,
            "labels": [lab.describe() for lab in data.labels],
        }
    )
    if args.features:
        sets = {f: [f] for f in FEATURES}
        sets.update({f"set:{k}": v for k, v in FEATURE_SETS.items()})
        doc["feature_study"] = evaluation.feature_study(data, budgets, sets)

    def render(d: dict[str, Any]) -> None:
        names = list(d["rows"][0]["slowdown"]) if d["rows"] else []
        how = (
            f"model {d['model']['version']} as it is"
            if d["mode"] == "model"
            else "leave-one-application-out"
        )
        ctx.table(
            f"slowdown over all-DRAM ({how})",
            ["app", "run", "chunk", "budget", *names, "gain share"],
            [
                [
                    r["app"],
                    r["run"],
                    _size(r["chunk_bytes"]),
                    f"{r['budget']}%",
                    *(f"{r['slowdown'][n]:.4f}" for n in names),
                    "no choice" if r["gain_share"] is None else _pct(r["gain_share"]),
                ]
                for r in d["rows"]
            ],
        )
        sm = d["summary"]
        _render_gain(ctx, sm["gain_share"], d["budgets"], d.get("in_training") or [])
        ctx.table(
            "mean degradation",
            ["budget", *names],
            [
                [f"{b}%", *(_pct(v[n]) for n in names)]
                for b, v in sm["mean_degradation_by_budget"].items()
            ]
            + [["all", *(_pct(sm["mean_degradation"][n]) for n in names)]],
        )
        print(
            f"model vs density-greedy: {_pct(sm.get('model_vs_density_greedy'))} less "
            f"degradation; model over oracle: {_pct(sm.get('model_over_oracle_slowdown'))} "
            f"slower; NDCG@5 {sm['ndcg@5']}; top-1 {sm['top1']}"
        )
        if d.get("selection"):
            picks = [v["chosen"] for v in d["selection"].values()]
            print(
                "settings chosen per fold: "
                + ", ".join(f"{n} x{picks.count(n)}" for n in dict.fromkeys(picks))
            )
        if "feature_study" in d:
            ctx.table(
                "feature study (model trained on the feature or set alone)",
                [
                    "features",
                    "mean degradation",
                    "vs density-greedy",
                    "over oracle",
                    "NDCG@5",
                    "top-1",
                    "diff to best",
                ],
                [
                    [
                        r["set"],
                        _pct(r["mean_degradation"]),
                        _pct(r["vs_density_greedy"]),
                        _pct(r["over_oracle"]),
                        r["ndcg@5"],
                        r["top1"],
                        _pct(r["difference_to_best"]),
                    ]
                    for r in d["feature_study"]
                ],
            )

    ctx.emit(doc, render)
    return 0


def _size(nbytes: int | None) -> str:
    if not nbytes:
        return ""
    mib = nbytes / (1 << 20)
    return f"{mib:g}MiB" if mib >= 1 else f"{nbytes}B"


def _render_gain(ctx: Any, g: dict[str, Any], budgets: list[int], seen: list[str]) -> None:
    """The gain-share table: per application and budget, then all applications."""

    def line(label: str, v: dict[str, Any]) -> list[Any]:
        md = v["mean_degradation"] or {}
        return [
            label + (" (trained on)" if label in seen else ""),
            v["rows_with_choice"],
            v["no_choice_rows"],
            _pct(md.get("model")),
            _pct(md.get("density-greedy")),
            _pct(md.get("oracle")),
            *(_pct(v["by_budget"].get(str(b), {}).get("share")) for b in budgets),
            _pct(v["share"]),
            _pct(v["model_over_greedy"]),
        ]

    ctx.table(
        "gain share: (density-greedy - model) / (density-greedy - oracle), rows with a choice",
        [
            "app",
            "rows",
            "no choice",
            "model",
            "density-greedy",
            "oracle",
            *(f"share {b}%" for b in budgets),
            "share",
            "model/greedy-1",
        ],
        [line(a, v) for a, v in g["per_app"].items()] + [line("all", g)],
    )
    parts = [
        f"{k} {_pct(v['share'])} ({v['rows_with_choice']} rows)"
        for k, v in g["by_chunking"].items()
    ]
    w = g["worst_app"]
    print(
        f"gain share {_pct(g['share'])} of the oracle's gain over density-greedy "
        f"(goal >= {100 * evaluation.GAIN_SHARE_GOAL:.0f}%; {'; '.join(parts)}); worst "
        + (
            f"application {w['app']}: model / density-greedy slowdown - 1 = "
            f"{_pct(w['model_over_greedy'])} (goal <= {100 * evaluation.WORST_APP_GOAL:.0f}%)"
            if w
            else "application: none has a choice"
        )
    )
    wa = g["worst_app_all_rows"]
    if wa:
        print(
            f"over all rows, those without a choice too: worst application {wa['app']}, "
            f"model / density-greedy slowdown - 1 = {_pct(wa['model_over_greedy_all_rows'])}"
        )
    if g["oracle_above_greedy_rows"]:
        print(
            f"note: on {g['oracle_above_greedy_rows']} rows the oracle's knapsack planned worse "
            "than density-greedy (the knapsack is not exact there): left out of the share"
        )
    if seen:
        print(f"note: the model was trained on {', '.join(seen)}: their scores are in-sample")


# ------------------------------------------------------------------------- recommend
def recommend(args: argparse.Namespace, ctx: Any) -> int:
    nodes = host_nodes()
    if args.dram_node is not None or args.slow_node is not None:
        dram = nodes.dram if args.dram_node is None else args.dram_node
        slow = nodes.slow if args.slow_node is None else args.slow_node
        if dram < 0 or slow < 0:
            raise InvalidInputError("NUMA nodes are numbers >= 0")
        present = {n.node for n in detect_nodes()}
        missing = sorted({dram, slow} - present) if present else []
        if missing:
            raise InvalidInputError(
                f"NUMA node {', '.join(map(str, missing))} is not on this host "
                f"(nodes: {', '.join(map(str, sorted(present)))}; see `placer tiers`)"
            )
        nodes = Nodes(dram, slow, "" if slow != dram else nodes.note)
    store = ctx.open_store()
    with store.session() as s:
        loaded = load_model(s)
        doc = recommend_plan(s, args.run, args.dram_budget, loaded, nodes, top=args.top)
        if args.output:
            try:
                write_plan(args.output, doc["plan"], validated=True)
            except OSError as exc:
                raise InvalidInputError(f"cannot write {args.output}: {exc.strerror}") from None
            doc["plan_file"] = str(args.output)

    def render(d: dict[str, Any]) -> None:
        plan = d["plan"]
        ctx.table(
            f"run {d['run']}: objects ranked by the model ({plan['model']['version']})",
            ["rank", "site", "chunk", "name", "size", "score", "pred. penalty"],
            [
                [
                    r["rank"],
                    r["site"][:16],
                    r["chunk"],
                    r["name"],
                    r["size_bytes"],
                    f"{r['score']:.3f}",
                    _pct(r["predicted_penalty"]),
                ]
                for r in d["ranked"]
            ],
        )
        b = plan["budget"]
        ctx.table(
            f"plan {d['plan_id']}: {b['bytes']} of {b['footprint_bytes']} bytes in DRAM "
            f"({100 * b['fraction']:.1f}%)",
            ["site", "chunk", "name", "tier", "node", "bytes", "value"],
            [
                [
                    x["site"][:16],
                    x["chunk"],
                    x.get("name", ""),
                    x["tier"],
                    x["node"],
                    x["size_bytes"],
                    _pct(x["score"]),
                ]
                for x in plan["decisions"][:40]
            ],
        )
        ctx.table(
            "predicted slowdown (model's penalties)",
            ["strategy", "slowdown"],
            [[k, f"{v:.4f}"] for k, v in d["predicted_slowdown"].items()],
        )
        emu = d["emulated"]
        if emu["available"]:
            print(
                f"emulated ({emu['tier']}, host model {emu['host_model']}): the plan runs "
                f"{emu['slowdown']:.3f}x its all-DRAM time (as `placer emulate --plan` prices it)"
            )
        else:
            print(f"emulated: not available ({emu['note']})")
        if plan["nodes"].get("note"):
            print(f"note: {plan['nodes']['note']}")
        if d.get("plan_file"):
            print(f"plan written to {d['plan_file']}")

    ctx.emit(doc, render)
    return 0


# ------------------------------------------------------------------------------- run
def run(args: argparse.Namespace, ctx: Any) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise InvalidInputError("nothing to run: give a command after --")
    doc = read_plan(args.plan)
    apply.check_plan_host(doc, f"plan {args.plan}", force=args.force)
    apply.check_plan_nodes(doc, f"plan {args.plan}")
    prep = prepare(cmd, args.name or doc.get("app") or None)
    forced = check_build_id(
        doc, prep.build_id, force=args.force, where=f"plan {args.plan}", binary=str(prep.binary)
    )
    store = ctx.open_store()
    store.ping()
    chunk_bytes = apply.plan_chunk_bytes(store, doc) if split_sites(doc) else None
    python = _python_plan(doc, prep, chunk_bytes)
    bindings = apply.plan_bindings(doc, chunk_bytes, python_side=python is not None)
    lines, unbound = bindings.lines, bindings.unbound
    note = bindings.note()
    if python is not None:
        note += f"; {len(python.bindings['sites'])} Python sites bound by the Python runner"
    elif unbound:
        note += (
            f"; {len(unbound)} native sites shared by objects on different nodes left unbound "
            "(run the Python script directly to bind its objects one by one)"
        )
    print(
        f"placer: applying {len(lines)} bindings from {args.plan}{note}",
        file=sys.stderr,
        flush=True,
    )

    job = register_self(cmd, say=lambda m: print(f"placer: {m}", file=sys.stderr))
    try:
        outcome = apply.run_with_plan(prep.argv, lines, python=python)
    except BaseException:
        close_job(job, None, "crashed")
        raise
    main = outcome.logs[0] if outcome.logs else None
    site_of, planned, planned_chunks = parse_shim_lines(lines)
    if main is not None:
        got = apply.achieved(
            main.allocs, main.binds, main.frees, outcome.snapshots, site_of, planned, planned_chunks
        )
        got["log_truncated"] = bool(main.truncated)
    else:
        got = {"sites": {}, "error": "the shim wrote no log (did the program start?)"}
    if python is not None:
        py_sites = apply.python_achieved(
            outcome.python_binds,
            outcome.snapshots,
            main.allocs if main is not None else (),
            main.frees if main is not None else (),
        )
        apply.merge_python(got, py_sites)
    got.update(
        {
            "shim_lines": len(lines),
            "python_runner": python is not None,
            "native_sites_left_to_python": python_native_sites(doc) if python else [],
            "native_sites_unbound": unbound,
            "forced": forced,
            "split_sites": bindings.split,
            "split_sites_bound_whole": bindings.collapsed,
            "chunk_bytes": chunk_bytes or None,
            "default_tier": doc["nodes"]["default_tier"],
        }
    )
    run_id, plan_id = _store_run(store, doc, prep, cmd, outcome, got)
    close_job(job, outcome.exit_code, outcome.status, run_id=run_id)
    result = {
        "run": run_id,
        "plan_id": plan_id,
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "wall_seconds": round(outcome.wall_seconds, 6),
        "achieved": got,
    }

    def render(d: dict[str, Any]) -> None:
        a = d["achieved"]
        rows = [
            [
                k[:16],
                v["node"],
                v["allocations"],
                v["binds_ok"],
                v["binds_failed"],
                " ".join(f"N{n}={c}" for n, c in sorted(v["pages"].items())),
                _pct(v["share_on_planned_node"]),
            ]
            for k, v in a["sites"].items()
        ]
        ctx.table(
            f"run {d['run']} ({d['status']}, {d['wall_seconds']:.2f} s): placement achieved",
            ["site", "node", "allocs", "binds ok", "binds failed", "pages seen", "on planned node"],
            rows,
        )
        print(
            f"pages on planned node: {_pct(a.get('share_on_planned_node'))} "
            f"of {a.get('pages_seen', 0)} seen in {a.get('snapshots', 0)} numa_maps samples",
            file=sys.stderr,
        )

    ctx.emit(result, render)
    return outcome.exit_code


def _python_plan(
    doc: dict[str, Any], prep: Any, chunk_bytes: int | None
) -> apply.PythonPlan | None:
    """The Python runner's part of a plan with ``py-`` sites, for a Python script."""
    if prep.python_script is None:
        return None
    bindings = python_bindings(doc, chunk_bytes)
    if not bindings["sites"]:
        return None
    return apply.PythonPlan(prep.argv[0], prep.python_script, bindings)


def _store_run(
    store: Any, doc: dict[str, Any], prep: Any, cmd: list[str], outcome: Any, got: dict[str, Any]
) -> tuple[int, int]:
    with store.session() as s:
        run = add_run(
            s,
            prep.app_name,
            "plan",
            command=cmd,
            cwd=os.getcwd(),
            binary_path=prep.binary,
            build_id=prep.build_id,
            inputs={"plan_run": doc.get("run"), "plan_strategy": doc.get("strategy")},
            status=outcome.status,
            exit_code=outcome.exit_code,
            wall_seconds=outcome.wall_seconds,
            signals={"plan": {"share_on_planned_node": got.get("share_on_planned_node")}},
        )
        known = site_ids_by_hash(s, {d["site"] for d in doc["decisions"]})
        model_id = (doc.get("model") or {}).get("id")
        if model_id is not None and trained_model_by_id(s, model_id) is None:
            model_id = None  # the plan came from another store
        plan = add_plan(
            s,
            run_id=run.id,
            model_id=model_id,
            strategy=str(doc.get("strategy") or "file"),
            build_id=doc["build_id"],
            budget_bytes=doc["budget"]["bytes"],
            predicted_slowdown=doc.get("predicted_slowdown"),
            document=doc,
            achieved=got,
            decisions=[
                NewDecision(
                    site_id=known[d["site"]],
                    chunk_index=d["chunk"],
                    tier=d["tier"],
                    numa_node=d["node"],
                    size_bytes=int(d.get("size_bytes", 0)),
                    score=float(d.get("score", 0.0)),
                    reason="from plan file",
                )
                for d in doc["decisions"]
                if d["site"] in known
            ],
        )
        return run.id, plan.id
