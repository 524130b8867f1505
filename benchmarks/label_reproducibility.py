"""Are emulated labels a result? Each program labeled twice, the second time under load.

For every program: calibrate the host once (``placer calibrate``, quiet), then
``placer experiment`` it on a quiet host, then again while another process keeps one core
busy, then recompute the first run's labels from the store (``placer experiment --run``).
Compares what users and the model see:

- all-slow slowdown (every object in the slow tier): the two profiles within 5%;
- per-object penalties: pairs of objects whose penalties differ by more than 10% in one
  profile must keep their order in the other (discordant pairs counted);
- plan labels (every strategy x budget): the quiet profile's plans (the same objects in the
  slow tier) priced on both profiles within 5% ("same plans"); and, reported beside it, each
  strategy's own plan on each profile ("own choice": a strategy that picks by sampled
  evidence, by chance or by first touch may pick other objects from another run);
- the recomputation from the stored profile: identical numbers.

    python benchmarks/label_reproducibility.py                       # the default corpus
    python benchmarks/label_reproducibility.py --only pr-g16 chase   # some of it
    python benchmarks/label_reproducibility.py --suite corpus        # placer's labeling corpus

Writes ``benchmarks/results/label_reproducibility.{json,md}``; docs/benchmarks.md records
them. Every number is EMULATED (tier spec optane) on this host's stored host model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / "examples" / "bin"

#: name -> command (relative to the repository). Sizes keep each deep pass under ~20 s.
CORPUS: dict[str, list[str]] = {
    "pr-g16": [str(BIN / "pr"), "-g", "16", "-n", "4"],
    "bfs-u16": [str(BIN / "bfs"), "-u", "16", "-n", "4"],
    "bc-g15": [str(BIN / "bc"), "-g", "15", "-n", "2"],
    "cc-u16": [str(BIN / "cc"), "-u", "16", "-n", "2"],
    "chase": [str(BIN / "chase"), "-m", "64M", "-i", "2000000"],
    "seqread": [str(BIN / "seqread"), "-m", "64M", "-i", "10"],
    "seqwrite": [str(BIN / "seqwrite"), "-m", "64M", "-i", "10"],
    "randupdate": [str(BIN / "randupdate"), "-m", "64M", "-i", "4000000"],
}
LIMIT = 0.05  # within 5%
ORDER_GAP = 0.10  # penalties that differ by more than 10% must keep their order


@dataclass
class Row:
    program: str
    all_slow_quiet: float
    all_slow_loaded: float
    all_slow_diff: float
    pairs: int
    discordant: int
    plan_max_diff: float
    worst_plan: str
    own_choice_max_diff: float
    worst_own_choice: str
    recompute_identical: bool
    ok: bool


def placer(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "placer", "--format", "json", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"placer {' '.join(args)}: {out.stderr.strip().splitlines()[-1:]}")
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


@contextmanager
def busy_core() -> Iterator[None]:
    """Another process keeping one core busy for as long as the block runs."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait()


def labels(store_url: str, experiment: int) -> dict[str, Any]:
    """Base, per-object penalties (keyed by site and allocation order) and plan slowdowns."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import select

    from placer.store import Store
    from placer.store.models import AllocObject, Experiment, Label, Site

    store = Store(store_url)
    with store.session() as s:
        exp = s.get(Experiment, experiment)
        assert exp is not None
        base = float(exp.baseline_seconds or 0.0)
        objects: dict[str, float] = {}
        plans: dict[str, float] = {}
        plan_keys: dict[str, list[str]] = {}
        key_of: dict[int, str] = {}
        rows = s.execute(
            select(Label, AllocObject, Site)
            .outerjoin(AllocObject, AllocObject.id == Label.object_id)
            .outerjoin(Site, Site.id == Label.site_id)
            .where(Label.experiment_id == experiment)
        ).all()
        order: dict[str, int] = {}
        for label, obj, site in sorted(rows, key=lambda r: r[1].alloc_seq if r[1] else 0):
            if label.kind == "object" and obj is not None and site is not None:
                key = f"{site.site_hash}#{order.setdefault(site.site_hash, 0)}.{obj.chunk_index}"
                order[site.site_hash] += obj.chunk_index == obj.chunk_count - 1
                objects[key] = float(label.penalty_seconds)
                key_of[obj.id] = key
        for label, _, _ in rows:
            if label.kind == "plan":
                name = f"{label.strategy}@{label.budget_fraction}"
                plans[name] = float(label.runtime_seconds) / base
                ids = (label.details or {}).get("slow_object_ids", [])
                plan_keys[name] = [key_of[i] for i in ids if i in key_of]
    store.dispose()
    return {"base": base, "objects": objects, "plans": plans, "plan_keys": plan_keys}


def priced(doc: dict[str, Any], keys: list[str]) -> float:
    """The slowdown of putting the objects ``keys`` in the slow tier, on profile ``doc``."""
    return (doc["base"] + sum(doc["objects"].get(k, 0.0) for k in keys)) / doc["base"]


def rel(x: float, y: float) -> float:
    return abs(x - y) / min(x, y)


def compare(program: str, a: dict[str, Any], b: dict[str, Any], again: dict[str, Any]) -> Row:
    slow_a = (a["base"] + sum(a["objects"].values())) / a["base"]
    slow_b = (b["base"] + sum(b["objects"].values())) / b["base"]
    diff = abs(slow_a - slow_b) / min(slow_a, slow_b)
    keys = sorted(set(a["objects"]) & set(b["objects"]))
    pairs = discordant = 0
    for i, k in enumerate(keys):
        for m in keys[i + 1 :]:
            pa, pm = a["objects"][k], a["objects"][m]
            if max(pa, pm) <= 0 or abs(pa - pm) / max(pa, pm) <= ORDER_GAP:
                continue
            pairs += 1
            if (pa > pm) != (b["objects"][k] > b["objects"][m]):
                discordant += 1
    same = {
        k: rel(priced(a, a["plan_keys"][k]), priced(b, a["plan_keys"][k])) for k in a["plan_keys"]
    }
    own = {k: rel(a["plans"][k], b["plans"][k]) for k in set(a["plans"]) & set(b["plans"])}
    plan_diff = max(same.values(), default=0.0)
    worst_plan = max(same, key=lambda k: same[k], default="")
    own_diff = max(own.values(), default=0.0)
    worst_own = max(own, key=lambda k: own[k], default="")
    identical = again == a
    ok = diff <= LIMIT and discordant == 0 and plan_diff <= LIMIT and identical
    return Row(
        program,
        slow_a,
        slow_b,
        diff,
        pairs,
        discordant,
        plan_diff,
        worst_plan,
        own_diff,
        worst_own,
        identical,
        ok,
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="programs of the corpus to run")
    ap.add_argument(
        "--suite",
        choices=["small", "corpus"],
        default="small",
        help="small: the eight programs above; corpus: `placer experiment --suite corpus`'s "
        "applications (third-party ones built with `make -C examples thirdparty`)",
    )
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    ap.add_argument("--keep", type=Path, help="keep the store (and its labels) in this folder")
    args = ap.parse_args()
    subprocess.run(["make", "-s", "-C", str(REPO / "examples")], check=True)
    programs = dict(CORPUS)
    if args.suite == "corpus":
        sys.path.insert(0, str(REPO))
        from placer.experiments.workloads import suite

        programs = {w.app: w.command for w in suite("corpus")}
    names = args.only or list(programs)
    unknown = [n for n in names if n not in programs]
    if unknown:
        raise SystemExit(f"unknown program(s) {unknown}; the corpus: {', '.join(programs)}")
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()[0]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="placer-repro-") as scratch:
        tmp = str(args.keep.resolve()) if args.keep else scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PLACER_DATA_DIR=tmp)
        env.pop("PLACER_STORE", None)
        store_url = f"sqlite:///{tmp}/placer.db"
        host = placer(env, "calibrate")
        print(
            f"host model {host['host_model']}: cache {host['effective_cache_bytes'] >> 20} MiB, "
            f"DRAM {host['dram_latency_ns']:.0f} ns, spread {host['spread']:.0%}",
            flush=True,
        )
        for name in names:
            cmd = programs[name]
            quiet = placer(env, "experiment", "--app", name, "--", *cmd)["experiments"][0]
            with busy_core():
                loaded = placer(env, "experiment", "--app", name, "--", *cmd)["experiments"][0]
            again = placer(env, "experiment", "--run", str(quiet["run"]))["experiments"][0]
            row = compare(
                name,
                labels(store_url, quiet["experiment"]),
                labels(store_url, loaded["experiment"]),
                labels(store_url, again["experiment"]),
            )
            rows.append(row)
            print(
                f"{name:12} all-slow {row.all_slow_quiet:.3f}x / {row.all_slow_loaded:.3f}x "
                f"({row.all_slow_diff:+.1%}), discordant {row.discordant}/{row.pairs}, "
                f"same plans within {row.plan_max_diff:.1%} ({row.worst_plan}), own choice "
                f"{row.own_choice_max_diff:.1%} ({row.worst_own_choice}), recompute identical "
                f"{row.recompute_identical}: {'ok' if row.ok else 'MISSED'}",
                flush=True,
            )
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "host_model": host,
        "mode": "EMULATED (tier spec optane)",
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "label_reproducibility.json").write_text(
        json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2, default=str)
    )
    lines = [
        f"Label reproducibility, {meta['date']} on {meta['host']} ({meta['cpus']} CPUs, "
        f"load {load_before:.2f} before), EMULATED optane, host model {host['host_model']}",
        "",
        "| program | all-slow quiet | all-slow, one core busy | diff | discordant pairs "
        "| same plans max diff (worst) | strategies' own plans max diff (worst) "
        "| recompute identical | within limits |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.program} | {r.all_slow_quiet:.3f}x | {r.all_slow_loaded:.3f}x | "
            f"{r.all_slow_diff:.1%} | {r.discordant}/{r.pairs} | {r.plan_max_diff:.1%} "
            f"({r.worst_plan}) | {r.own_choice_max_diff:.1%} ({r.worst_own_choice}) | "
            f"{'yes' if r.recompute_identical else 'no'} | {'yes' if r.ok else 'no'} |"
        )
    (args.out_dir / "label_reproducibility.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
