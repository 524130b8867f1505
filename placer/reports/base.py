"""What every report kind shares: the builder contract, sections and provenance.

A report is built in two steps so that HTML, Markdown and JSON always say the same thing:
a :class:`ReportBuilder` reads the store into a plain JSON document (the *twin*), then
:mod:`placer.reports.render` turns that document into HTML (with figures) or Markdown.
Nothing in the renderers reads the store.
"""

from __future__ import annotations

import datetime as dt
import math
from abc import ABC, abstractmethod
from typing import Any

from placer import __version__

#: Bumped only when a key of a report document changes meaning (keys are only ever added).
FORMAT_VERSION = 1


def provenance(
    kind: str,
    *,
    tier_spec: str | None = None,
    source: str = "",
    host: str | None = None,
    experiment_id: int | None = None,
) -> dict[str, Any]:
    """Where a section's numbers come from, shown next to every figure and table.

    ``kind`` is ``measured`` (observed on a real host), ``emulated`` (the slow-tier
    emulator), ``predicted`` (a model's estimate) or ``mixed``; ``tier_spec`` names the
    tier the numbers are for (None: tier-independent, e.g. pipeline throughput).
    """
    return {
        "kind": kind,
        "tier_spec": tier_spec,
        "source": source,
        "host": host,
        "experiment_id": experiment_id,
    }


def absent(note: str, **extra: Any) -> dict[str, Any]:
    """A section whose data is not in the store: said plainly, never an error."""
    return {"available": False, "note": note, **extra}


def clean(value: Any) -> Any:
    """The document with NaN/inf replaced by None (JSON has no NaN) and numpy scalars as floats."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return clean(item())
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f if math.isfinite(f) else None


def verdict(
    action: str, effect: str | None, basis: str | None, risk: str | None, **numbers: Any
) -> dict[str, Any]:
    """What a report opens with: what to do, the expected effect and its basis (measured,
    emulated, predicted), and the risk, as one sentence; ``numbers`` are the figures it
    quotes, taken from the sections below so the two cannot disagree."""
    sentence = action
    if effect:
        sentence += f": {effect}" + (f" ({basis})" if basis else "")
    if risk:
        sentence += f"; risk: {risk}"
    return {
        "sentence": sentence + ".",
        "action": action,
        "effect": effect,
        "basis": basis,
        "risk": risk,
        **numbers,
    }


def iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat(timespec="seconds")


class ReportBuilder(ABC):
    """Reads one report's data from an open store into its JSON document.

    Contract: :meth:`build` raises :class:`placer.errors.NotFoundError` when the subject
    (run, pipeline) is not in the store, and returns a document whose sections each carry
    ``available`` (and a ``note`` when False) plus ``provenance`` when they hold numbers.
    It never writes to the store.
    """

    #: ``run`` | ``pipeline`` | ``fleet``: also the name of the HTML/Markdown templates.
    kind: str = ""

    def __init__(self, store: Any) -> None:
        self.store = store

    @abstractmethod
    def title(self, doc: dict[str, Any]) -> str:
        """The report's title line."""

    @abstractmethod
    def collect(self) -> dict[str, Any]:
        """The kind-specific sections."""

    @abstractmethod
    def verdict(self, doc: dict[str, Any]) -> dict[str, Any]:
        """The report's opening sentence, from the sections of ``doc`` (:func:`verdict`)."""

    def build(self) -> dict[str, Any]:
        body = self.collect()
        doc = {
            "report": self.kind,
            "format_version": FORMAT_VERSION,
            "generated_at": iso(dt.datetime.now(dt.UTC)),
            "placer_version": __version__,
            "store": self.store.display_url,
            **body,
        }
        doc["title"] = self.title(doc)
        doc["verdict"] = self.verdict(doc)
        return clean(doc)
