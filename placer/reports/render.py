"""Turn a report document into HTML (with inline SVG figures) or Markdown.

HTML templates autoescape (Jinja2): every string from a program (paths, symbols, command
lines) is text, never markup. The only markup inserted unescaped is the SVG that
:mod:`placer.reports.figures` produced, in which matplotlib escaped every string itself.
Markdown cells go through :func:`md`, which neutralizes table pipes and HTML.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from placer.reports import figures

FORMATS = ("html", "json", "md")
#: Rows of a run's object and decision tables the HTML report lists (in rank order); the
#: rest are one summary line. A run of 10,000 sites was a 12 MB page nobody reads; the
#: JSON twin lists every row (issue 17).
HTML_TABLE_ROWS = 500


def human_bytes(n: Any) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def num(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}"
    return str(v)


def pct(v: Any, digits: int = 0) -> str:
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return "—"
    return f"{100 * v:.{digits}f}%"


def slow(v: Any) -> str:
    """A slowdown factor as ``+12.3%`` over all-DRAM."""
    if v is None or not isinstance(v, int | float) or not math.isfinite(v):
        return "—"
    return f"+{100 * (v - 1):.1f}%"


def md(value: Any) -> str:
    """A Markdown table cell: no pipes, no raw HTML, no line breaks."""
    text = "—" if value is None else str(value)
    text = html.escape(text, quote=False)
    for ch in ("\\", "|", "`", "*", "_", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined  # lazy: heavy

    env = Environment(
        loader=PackageLoader("placer.reports", "templates"),
        autoescape=lambda name: (name or "").endswith(".html.j2"),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["HTML_TABLE_ROWS"] = HTML_TABLE_ROWS
    env.filters.update(
        {
            "bytes": human_bytes,
            "num": num,
            "pct": pct,
            "slow": slow,
            "md": md,
            "prov": figures.provenance_line,
            "tojson_compact": lambda v: json.dumps(v, sort_keys=True, default=str),
        }
    )
    return env


def _figures(doc: dict[str, Any]) -> dict[str, Any]:
    """Every figure the document has data for, as safe-to-inline SVG markup."""
    from markupsafe import Markup  # lazy: heavy (jinja2's)

    out: dict[str, Any] = {}
    kind = doc["report"]
    if kind == "run":
        if doc["heatmap"].get("available"):
            out["heatmap"] = figures.heatmap(doc["heatmap"])
        if doc["budget_curve"].get("available"):
            out["budget_curve"] = figures.budget_curve(doc["budget_curve"])
    elif kind == "pipeline":
        if doc["stages"].get("available"):
            out["stage_graph"] = figures.stage_graph(doc["stages"])
        if doc["tuning"].get("available"):
            out["tuning"] = figures.tuning_history(doc["tuning"], doc["throughput"])
        if doc["throughput"].get("available"):
            out["before_after"] = figures.before_after(doc["throughput"])
    elif kind == "fleet":
        jobs = doc["jobs"]
        if jobs.get("available") and jobs["rows"]:
            out["activity"] = figures.fleet_activity(jobs["rows"], jobs.get("provenance"))
    return {k: Markup(v) for k, v in out.items()}  # noqa: S704 - matplotlib-escaped SVG


def render(doc: dict[str, Any], fmt: str) -> str:
    """The report document as ``html``, ``md`` or ``json`` text."""
    if fmt == "json":
        return json.dumps(doc, indent=2, default=str, allow_nan=False) + "\n"
    env = _env()
    if fmt == "html":
        return env.get_template(f"{doc['report']}.html.j2").render(doc=doc, fig=_figures(doc))
    if fmt == "md":
        return env.get_template(f"{doc['report']}.md.j2").render(doc=doc)
    raise ValueError(f"unknown report format {fmt!r}")
