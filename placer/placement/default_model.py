"""Build the shipped default placement model from a labeled example corpus.

    placer experiment --suite examples          # label the example corpus (emulated Optane)
    python -m placer.placement.default_model    # train on it, write placer/placement/default/

The default model lets ``placer recommend`` work on a fresh install before the user has
labels of their own; ``placer train`` on the user's labels then takes over (the newest
stored model wins). It is built exactly as ``placer train`` builds a model (settings chosen
by leave-one-application-out among ``evaluation.CANDIDATES``), and its ``meta.json`` holds
the nested leave-one-application-out summary of that procedure. Output: ``ranker.txt`` and
``penalty.txt`` (LightGBM text) and ``meta.json`` (features, training runs, settings
chosen, evaluation, library versions, the applications held out).

Applications in ``placer.contracts.examples.HELDOUT_APPS`` (from ``--suite corpus``) are
dropped before anything is chosen or fitted, so ``placer evaluate --model default --apps
kvlog,zstd,...`` scores the shipped model on programs it never saw.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from placer.config import resolve_store_url
from placer.contracts.examples import HELDOUT_APPS
from placer.errors import InvalidInputError, PlacerError
from placer.placement import evaluation
from placer.store import Store

OUT = Path(__file__).resolve().parent / "default"


def training_set(data: evaluation.Dataset) -> tuple[evaluation.Dataset, list[str]]:
    """The labeled runs the default model learns from, and the held-out apps left out."""
    apps = set(data.apps())
    held = sorted(apps & HELDOUT_APPS)
    return data.subset(apps - HELDOUT_APPS), held


def build(
    store_url: str, out: Path, source: str = "all", tier: str = "optane", evaluate: bool = True
) -> dict[str, Any]:
    store = Store(store_url, create=False)
    with store.session() as s:
        data, held_out = training_set(evaluation.training_labels(s, source, tier))
    if not data.labels:
        raise InvalidInputError(
            f"no labeled runs left after holding out {', '.join(held_out)}: "
            "label more applications (`placer experiment --suite corpus`)"
        )
    budgets = list(evaluation.DEFAULT_BUDGETS)
    summary = None
    if evaluate and len(data.apps()) >= 2:
        # the procedure shipped below, judged honestly: settings chosen inside every fold
        summary = evaluation.evaluate(data, budgets, candidates=evaluation.CANDIDATES)["summary"]
    # the same procedure as `placer train`: settings chosen by LOAO on the whole corpus
    chosen, params, inner = evaluation.choose(data, budgets)
    model = evaluation.fit(data, params)
    model.meta_["selection"] = {"chosen": chosen, "inner_degradation": inner}
    ranker, penalty, meta = model.to_texts()
    meta["tag"] = dt.date.today().isoformat()
    meta["built_by"] = "python -m placer.placement.default_model"
    meta["label_source"] = source
    meta["tier"] = tier
    meta["held_out_apps"] = held_out
    if summary is not None:
        meta["loao_summary"] = summary
    out.mkdir(parents=True, exist_ok=True)
    (out / "ranker.txt").write_text(ranker, "utf-8")
    (out / "penalty.txt").write_text(penalty, "utf-8")
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", "utf-8")
    store.dispose()
    return meta


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m placer.placement.default_model", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--store", help="store with the labeled corpus (default: placer's store)")
    p.add_argument("--out", type=Path, default=OUT, help=f"output directory (default {OUT})")
    p.add_argument("--from-labels", default="all", choices=["measured", "emulated", "all"])
    p.add_argument("--tier", default="optane")
    p.add_argument("--no-evaluate", action="store_true", help="skip the LOAO summary")
    args = p.parse_args(argv)
    try:
        meta = build(
            resolve_store_url(args.store),
            args.out,
            args.from_labels,
            args.tier,
            not args.no_evaluate,
        )
    except PlacerError as exc:
        print(f"default_model: error: {exc}", file=sys.stderr)
        return exc.exit_code
    t = meta["training"]
    print(
        f"default model written to {args.out}: {t['objects']} objects, {t['runs']} runs, "
        f"apps {', '.join(t['apps'])}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
