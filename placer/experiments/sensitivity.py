"""How the emulator's object ranking moves when each main constant moves by ±30%.

For every graph-suite run in the store with deep data, rank objects by emulated penalty
(the label the model learns) under the nominal constants, then again with one constant
scaled by 0.7 and 1.3, and report how much the top of the ranking changes::

    python -m placer.experiments.sensitivity --store URL [--tier optane] [--top 3]

Columns: mean share of the nominal top-k objects still in the top-k, Kendall's tau of the
full ranking (scipy), and the mean change of the all-slow slowdown.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from placer.config import resolve_store_url
from placer.contracts.examples import GRAPH_KERNELS
from placer.emulator.host import stored
from placer.emulator.load import load_profile
from placer.emulator.model import HostDram, RunProfile, costs
from placer.errors import PlacerError
from placer.store import Store
from placer.store.repository.labels import runs_with_emulated_experiments
from placer.tiers.specs import TierSpec, load_spec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: (label, how to perturb): spec constants of the slow tier, then this host's DRAM.
KNOBS: list[tuple[str, str, str]] = [
    ("slow read latency", "spec", "read_latency_random_ns"),
    ("slow read bandwidth", "spec", "read_bandwidth_gbps"),
    ("slow write bandwidth", "spec", "write_bandwidth_gbps"),
    ("slow access granularity", "spec", "access_granularity_bytes"),
    ("host DRAM latency", "host", "latency_ns"),
    ("host DRAM bandwidth (r+w)", "host", "read_gbps,write_gbps"),
    ("LLC size", "host", "llc_bytes"),
]


def _perturb(
    spec: TierSpec, host: HostDram, kind: str, keys: str, f: float
) -> tuple[TierSpec, HostDram]:
    if kind == "spec":
        return spec.scaled(**{k: f for k in keys.split(",")}), host
    changes = {k: type(getattr(host, k))(getattr(host, k) * f) for k in keys.split(",")}
    return spec, dataclasses.replace(host, **changes)


def ranking(
    profile: RunProfile, spec: TierSpec, ref: TierSpec, host: HostDram
) -> tuple[list[int], dict[int, float], float]:
    cs, _ = costs(profile, spec, ref, host)
    pen = {i: c.penalty_s for i, c in cs.items()}
    order = sorted(pen, key=lambda i: (-pen[i], i))
    slowdown = (profile.wall_seconds + sum(pen.values())) / profile.wall_seconds
    return order, pen, slowdown


def table(
    profiles: list[RunProfile], spec: TierSpec, ref: TierSpec, host: HostDram, top: int = 3
) -> list[dict[str, Any]]:
    """One row per (constant, factor) with ranking stability over ``profiles``."""
    from scipy.stats import kendalltau  # lazy: heavy

    nominal = {p.run_id: ranking(p, spec, ref, host) for p in profiles}
    rows = []
    for label, kind, keys in KNOBS:
        for f in (0.7, 1.3):
            s2, h2 = _perturb(spec, host, kind, keys, f)
            kept, taus, dslow = [], [], []
            for p in profiles:
                o0, pen0, sd0 = nominal[p.run_id]
                o1, pen1, sd1 = ranking(p, s2, ref, h2)
                k = min(top, len(o0))
                kept.append(len(set(o0[:k]) & set(o1[:k])) / k if k else 1.0)
                ids = sorted(pen0)
                if len(ids) > 1:
                    tau = kendalltau([pen0[i] for i in ids], [pen1[i] for i in ids]).statistic
                    if tau == tau:  # not NaN (constant rankings)
                        taus.append(float(tau))
                dslow.append(sd1 / sd0 - 1)
            rows.append(
                {
                    "constant": label,
                    "factor": f,
                    "top_kept": sum(kept) / len(kept) if kept else 1.0,
                    "kendall_tau": sum(taus) / len(taus) if taus else 1.0,
                    "all_slow_change": sum(dslow) / len(dslow) if dslow else 0.0,
                }
            )
    return rows


def graph_profiles(session: Session, select_app: Callable[[str], bool]) -> list[RunProfile]:
    """Latest labeled native run of each matching application that has deep data."""
    out: dict[str, RunProfile] = {}
    for run_id, name in runs_with_emulated_experiments(session):
        if not select_app(name):
            continue
        try:
            out[name] = load_profile(session, run_id)
        except PlacerError:
            continue
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--tier", default="optane")
    ap.add_argument("--top", type=int, default=3)
    args = ap.parse_args(argv)
    spec, ref = load_spec(args.tier), load_spec("dram")
    store = Store(resolve_store_url(args.store), create=False)
    with store.session() as s:
        host = stored(s)
        profiles = graph_profiles(s, lambda n: n.split("-")[0] in GRAPH_KERNELS)
    print(
        f"{len(profiles)} graph runs, tier {spec.name}, top-{args.top}, host DRAM: "
        f"{host.latency_ns:.0f} ns, {host.read_gbps:.1f}/{host.write_gbps:.1f} GB/s, "
        f"LLC {host.llc_bytes >> 20} MiB ({host.source})\n"
    )
    print(f"| constant | x | top-{args.top} kept | Kendall tau | all-slow slowdown change |")
    print("|---|---|---|---|---|")
    for r in table(profiles, spec, ref, host, args.top):
        print(
            f"| {r['constant']} | {r['factor']:.1f} | {r['top_kept']:.0%} | "
            f"{r['kendall_tau']:.2f} | {r['all_slow_change']:+.1%} |"
        )
    store.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
