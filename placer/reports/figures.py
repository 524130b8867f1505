"""Figures as inline SVG strings, drawn with matplotlib's Agg-free SVG backend.

matplotlib is imported lazily (the CLI must start fast) and configured so that the SVG
is self-contained and safe to inline: text stays text (``svg.fonttype = none``, a generic
font family, no external fonts), math parsing is off (``$`` in a path is just a dollar)
and matplotlib escapes every string it writes into the XML. Every figure carries its
provenance line (measured / emulated / predicted, tier spec) inside the picture.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence
from typing import Any

# A palette readable by the colour-blind (Okabe-Ito), one colour per strategy.
COLORS = {
    "model": "#0072B2",
    "model-predicted": "#56B4E9",
    "density-greedy": "#D55E00",
    "ecohmem-knapsack": "#E69F00",
    "size-threshold": "#009E73",
    "first-touch": "#CC79A7",
    "random": "#999999",
    "oracle": "#000000",
}
_EXTRA = ["#F0E442", "#882255", "#44AA99", "#117733", "#332288"]
ACCENT = "#0072B2"
HOT = "#D55E00"


def provenance_line(prov: dict[str, Any] | None) -> str:
    """One line saying where the numbers come from, e.g. ``emulated · tier spec optane``."""
    if not prov:
        return ""
    parts = [str(prov.get("kind", ""))]
    if prov.get("tier_spec"):
        parts.append(f"tier spec {prov['tier_spec']}")
    if prov.get("experiment_id") is not None:
        parts.append(f"experiment {prov['experiment_id']}")
    if prov.get("host"):
        parts.append(f"host {prov['host']}")
    if prov.get("source"):
        parts.append(str(prov["source"]))
    return " · ".join(p for p in parts if p)


def _mpl() -> Any:
    import matplotlib  # lazy: heavy

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt  # lazy: heavy

    matplotlib.rcParams.update(
        {
            "svg.fonttype": "none",
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Helvetica", "Arial", "sans-serif"],
            "font.size": 10,
            "text.parse_math": False,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titleweight": "bold",
            "axes.titlesize": 11,
            "axes.titlelocation": "left",
        }
    )
    return plt


def _svg(fig: Any, prov: dict[str, Any] | None) -> str:
    """The figure as an ``<svg>`` element that scales with the page."""
    plt = _mpl()
    line = provenance_line(prov)
    if line:
        # Below everything drawn so far (axis labels included), left-aligned.
        renderer = fig.canvas.get_renderer()
        box = fig.get_tightbbox(renderer)
        height = fig.get_size_inches()[1]
        x0 = max(box.x0 / fig.get_size_inches()[0], 0.0)
        fig.text(
            x0, (box.y0 - 0.06) / height, line, fontsize=8, color="#555555", ha="left", va="top"
        )
    buf = io.StringIO()
    fig.savefig(
        buf,
        format="svg",
        bbox_inches="tight",
        pad_inches=0.12,
        metadata={"Date": None, "Creator": None},
    )
    plt.close(fig)
    text = buf.getvalue()
    text = text[text.index("<svg") :]
    # Responsive: keep the viewBox, let CSS size it.
    head_end = text.index(">")
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    return head + ' class="figure" role="img"' + text[head_end:]


def _plain_log(axis: Any) -> None:
    """Log-scale ticks as plain numbers (math text is off, so no ``10^3`` markup)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # lazy: heavy

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _si(v: float) -> str:
    """Compact number for small boxes: 9613 -> 9.6k, 208294 -> 208k."""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if abs(v) >= scale:
            x = v / scale
            return f"{x:.1f}{unit}" if x < 10 else f"{x:.0f}{unit}"
    return f"{v:.0f}"


def _color(name: str, i: int) -> str:
    return COLORS.get(name, _EXTRA[i % len(_EXTRA)])


def _short(label: str, n: int = 48) -> str:
    return label if len(label) <= n else "…" + label[-(n - 1) :]


# --------------------------------------------------------------------------- run report


def heatmap(section: dict[str, Any]) -> str:
    """Access density over time per object (rows), like damo's heatmaps."""
    import numpy as np  # lazy: heavy

    plt = _mpl()
    rows = section["rows"]
    data = np.array([[np.nan if v is None else v for v in r["values"]] for r in rows], dtype=float)
    edges = section["time_s"]
    height = 1.2 + 0.28 * len(rows)
    fig, ax = plt.subplots(figsize=(10, height))
    cmap = plt.get_cmap("YlOrRd").with_extremes(bad="#d9d9d9")
    mesh = ax.pcolormesh(
        edges,
        np.arange(len(rows) + 1),
        np.ma.masked_invalid(data),
        cmap=cmap,
        vmin=0.0,
        vmax=1.0,
        shading="flat",
    )
    ax.set_yticks(np.arange(len(rows)) + 0.5)
    ax.set_yticklabels([_short(r.get("short") or r["label"]) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("time since the first allocation (s)")
    ax.set_title(
        "Access density over time (touched / sampled pages; grey: not alive or not sampled)"
    )
    cb = fig.colorbar(mesh, ax=ax, fraction=0.025, pad=0.01)
    cb.set_label("density")
    return _svg(fig, section.get("provenance"))


def budget_curve(section: dict[str, Any]) -> str:
    """Slowdown over all-DRAM vs DRAM budget: model plan, baselines, oracle."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(10, 4.6))
    plan_label_seen = False
    for i, s in enumerate(section["series"]):
        pts = [
            p
            for p in s["points"]
            if p.get("budget_fraction") is not None and p.get("slowdown") is not None
        ]
        if not pts:
            continue
        xs = [100 * p["budget_fraction"] for p in pts]
        ys = [p["slowdown"] for p in pts]
        name = s["strategy"]
        color = _color(name, i)
        if s.get("priced_by") == "plan-labels":
            # The experiment's own plan runtimes: crosses in the strategy's colour, so they
            # sit on (or off) the label-priced line of the same strategy without clutter.
            ax.scatter(
                xs,
                ys,
                marker="X",
                s=70,
                color=color,
                edgecolor="white",
                lw=0.6,
                zorder=4,
                label=None if plan_label_seen else "plan runtime from the experiment",
            )
            plan_label_seen = True
        else:
            style: dict[str, Any] = {"color": color, "label": s["label"], "lw": 1.6}
            if name == "model":
                style["lw"] = 2.8
            if name == "model-predicted":
                style["ls"] = "--"
            if name == "oracle":
                style["ls"] = ":"
                style["lw"] = 2.0
            ax.plot(xs, ys, marker="o", ms=3.5, **style)
        spreads = [p.get("spread") for p in pts]
        if any(sp for sp in spreads):
            ax.errorbar(
                xs,
                ys,
                yerr=[sp or 0 for sp in spreads],
                fmt="none",
                ecolor=color,
                alpha=0.6,
            )
    drawn: set[tuple[float, float]] = set()
    for p in reversed(section.get("stored_plans", [])):
        if p.get("budget_fraction") is None or p.get("slowdown") is None:
            continue
        spot = (round(p["budget_fraction"], 4), round(p["slowdown"], 6))
        if spot in drawn:
            continue
        drawn.add(spot)
        ax.scatter(
            [100 * p["budget_fraction"]],
            [p["slowdown"]],
            marker="*",
            s=160,
            color=COLORS["model"],
            edgecolor="white",
            zorder=5,
        )
        ax.annotate(
            f"plan {p['plan_id']}",
            (100 * p["budget_fraction"], p["slowdown"]),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
            color=COLORS["model"],
        )
    ax.set_xlabel("DRAM budget (% of the run's footprint)")
    ax.set_ylabel("runtime / all-DRAM runtime")
    ax.set_xlim(0, 102)
    ax.axhline(1.0, color="#bbbbbb", lw=0.8)
    ax.grid(alpha=0.25)
    ax.set_title("What a DRAM budget buys: slowdown under each strategy (lower is better)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _svg(fig, section.get("provenance"))


# --------------------------------------------------------------------------- pipeline


def stage_graph(section: dict[str, Any]) -> str:
    """Stages as boxes, source to output, with per-core rate, workers and CPU share."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # lazy: heavy

    plt = _mpl()
    rows = section["rows"]
    n = len(rows)
    small = 7.0 if n > 5 else 8.0
    fig, (ax, bx) = plt.subplots(
        2, 1, figsize=(10, 3.2 + 0.3 * n), gridspec_kw={"height_ratios": [1.6, 0.4 + 0.2 * n]}
    )
    ax.set_xlim(0, n)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for i, r in enumerate(rows):
        hot = r["bottleneck"]
        box = FancyBboxPatch(
            (i + 0.08, 0.12),
            0.72,
            0.76,
            boxstyle="round,pad=0.02,rounding_size=0.05",
            fc="#fde8dd" if hot else "#eef4fa",
            ec=HOT if hot else ACCENT,
            lw=2.4 if hot else 1.2,
        )
        ax.add_patch(box)
        cx = i + 0.44
        ax.text(
            cx,
            0.76,
            _short(r["name"], 14 if n > 5 else 18),
            ha="center",
            va="center",
            fontsize=10 if n <= 5 else 8.5,
            fontweight="bold",
            color=HOT if hot else "#1a1a1a",
        )
        ax.text(
            cx,
            0.62,
            r["kind"]
            + ((" · seq." if n > 5 else " · sequential") if r["sequential"] else "")
            + (" · random" if r["random"] else ""),
            ha="center",
            fontsize=small - 0.5,
            color="#555555",
        )
        rate = r.get("samples_per_core_second")
        ax.text(
            cx,
            0.46,
            "— /s per core" if rate is None else f"{_si(rate)}/s per core",
            ha="center",
            fontsize=small,
        )
        workers = r.get("measured_parallelism")
        planned = r.get("planned_parallelism")
        ax.text(
            cx,
            0.33,
            f"workers {workers if workers is not None else '—'}"
            + (f" → {planned}" if planned is not None else ""),
            ha="center",
            fontsize=small,
        )
        share = r.get("cpu_share")
        ax.text(
            cx,
            0.2,
            "CPU —" if share is None else f"CPU {100 * share:.0f}%",
            ha="center",
            fontsize=small,
        )
        if hot:
            ax.text(cx, 0.97, "BOTTLENECK", ha="center", fontsize=8, fontweight="bold", color=HOT)
        if i < n - 1:
            ax.add_patch(
                FancyArrowPatch(
                    (i + 0.82, 0.5),
                    (i + 1.06, 0.5),
                    arrowstyle="-|>",
                    mutation_scale=12,
                    color="#777777",
                )
            )
    names = [_short(r["name"], 18) for r in rows]
    rates = [r.get("measured_samples_per_second") or 0.0 for r in rows]
    colors = [HOT if r["bottleneck"] else ACCENT for r in rows]
    bx.barh(names, rates, color=colors)
    bx.invert_yaxis()
    for y, v in enumerate(rates):
        if v:
            bx.text(v, y, f" {v:,.0f}", va="center", fontsize=8)
    ub = section.get("upper_bound_samples_per_second")
    if ub:
        bx.axvline(ub, color="#333333", ls="--", lw=1, label=f"analysis upper bound {ub:,.0f}")
        bx.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    bx.set_xlabel("samples/s each stage sustains with its measured workers (log scale)")
    if any(rates):
        bx.set_xscale("log")
        _plain_log(bx.xaxis)
    bx.set_title("Stage rates on the profiled (naive) configuration")
    fig.subplots_adjust(hspace=0.35)
    return _svg(fig, section.get("provenance"))


def tuning_history(tuning: dict[str, Any], throughput: dict[str, Any]) -> str:
    """Each trial's throughput, the best so far, the naive run and the analysis bound."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(10, 4.2))
    trials = tuning["trials"]
    marks = {
        "complete": ("o", ACCENT),
        "pruned": ("x", "#888888"),
        "fail": ("v", HOT),
        "failed": ("v", HOT),
        "running": ("s", "#bbbbbb"),
    }
    seen = set()
    for t in trials:
        v = t.get("samples_per_second")
        if v is None:
            continue
        m, c = marks.get(t["state"], ("o", "#999999"))
        if not t.get("feasible", True):
            m, c = "D", "#E69F00"
        label = t["state"] if t.get("feasible", True) else "over budget"
        ax.scatter(
            [t["number"]],
            [v],
            marker=m,
            color=c,
            s=30,
            zorder=3,
            label=None if label in seen else label,
        )
        seen.add(label)
        if t.get("origin") == "analysis":
            ax.annotate(
                "analysis's config",
                (t["number"], v),
                textcoords="offset points",
                xytext=(6, -12),
                fontsize=8,
                color="#333333",
            )
    xs = [t["number"] for t in trials if t.get("best_so_far") is not None]
    ys = [t["best_so_far"] for t in trials if t.get("best_so_far") is not None]
    if xs:
        ax.step(xs, ys, where="post", color=ACCENT, lw=2, label="best so far")
    naive = throughput.get("naive_samples_per_second") if throughput.get("available") else None
    ub = throughput.get("upper_bound_samples_per_second") if throughput.get("available") else None
    if naive:
        ax.axhline(naive, color=HOT, ls=":", lw=1.2, label=f"naive {naive:,.0f}")
    if ub:
        ax.axhline(ub, color="#333333", ls="--", lw=1, label=f"analysis bound {ub:,.0f}")
    vals = [t["samples_per_second"] for t in trials if t.get("samples_per_second")]
    if vals and naive and max(vals) / max(min(vals + [naive]), 1e-9) > 20:
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
    ax.set_xlabel("trial")
    ax.set_ylabel("samples/s")
    ax.grid(alpha=0.25)
    ax.set_title(f"Tuning history: {tuning['study']['name']}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return _svg(fig, tuning.get("provenance"))


def before_after(section: dict[str, Any]) -> str:
    """Naive vs tuned throughput against the analysis's upper bound."""
    plt = _mpl()
    fig, ax = plt.subplots(figsize=(10, 2.1))
    raw = [
        ("naive config", section.get("naive_samples_per_second"), HOT),
        ("tuned config", section.get("best_samples_per_second"), ACCENT),
        ("analysis bound", section.get("upper_bound_samples_per_second"), "#bbbbbb"),
    ]
    items: list[tuple[str, float, str]] = [
        (n, float(v), c) for n, v, c in raw if v is not None and math.isfinite(v)
    ]
    ax.barh([n for n, _, _ in items], [v for _, v, _ in items], color=[c for _, _, c in items])
    ax.invert_yaxis()
    for y, (_, v, _) in enumerate(items):
        ax.text(v, y, f" {v:,.0f}", va="center", fontsize=9)
    ax.set_xlabel("samples/s")
    sp = section.get("speedup")
    ax.set_title("Before and after" + (f": {sp:,.1f}x faster" if sp else ""))
    ax.set_xlim(0, max(v for _, v, _ in items) * 1.18)
    return _svg(fig, section.get("provenance"))


# --------------------------------------------------------------------------- fleet


def fleet_activity(rows: Sequence[dict[str, Any]], prov: dict[str, Any] | None) -> str:
    """Per job: decisions taken, and page migrations (move_pages calls) with bytes moved.

    Calls and bytes are drawn apart: on a host whose pages already sit on their target
    node (one NUMA node) every call moves nothing, and a bytes-only bar would hide them.
    """
    plt = _mpl()
    labels = [f"job {r['id']} ({r['kind']})" for r in rows]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 0.9 + 0.32 * len(rows)), sharey=True)
    ax.barh(labels, [r.get("decisions") or 0 for r in rows], color=ACCENT)
    ax.set_title("Decisions taken")
    calls = [r.get("migrations") or 0 for r in rows]
    bx.barh(labels, calls, color=HOT)
    bx.set_title("Page migrations (move_pages calls; bytes moved)")
    top = max(calls, default=0)
    for i, r in enumerate(rows):
        moved = (r.get("bytes_migrated") or 0) / 2**20
        bx.text(calls[i] + 0.02 * max(top, 1), i, f"{moved:,.1f} MiB", va="center", fontsize=8)
    bx.set_xlim(0, max(top, 1) * 1.35)
    ax.invert_yaxis()
    from matplotlib.ticker import MaxNLocator  # lazy: heavy

    for a in (ax, bx):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.grid(axis="x", alpha=0.25)
    return _svg(fig, prov)
