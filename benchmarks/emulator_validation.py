"""Does the emulator agree with published Optane / CXL measurements on the microbenchmarks?

Measures this host's model once (as ``placer calibrate`` does), then profiles each example
microbenchmark (pointer chase, sequential read, sequential write, random update) with the
real collectors and a DHAT pass, emulates it with every object in the slow tier, and
compares with the slowdown the tier spec's published ratios imply for that very run, phase
by phase (``placer.experiments.calibration``; constants and their sources in
``placer/tiers/specs/*.toml``). Goal: within 20%.

    python benchmarks/emulator_validation.py                     # optane and cxl
    python benchmarks/emulator_validation.py --record tests/data/emulator/validation.json

``--record`` keeps the measured inputs (host model, each benchmark's report and profile):
``tests/test_emulator_calibration.py`` re-emulates them, so the test checks the emulator on
fixed inputs and cannot fail because the host is busy. Results go to
``benchmarks/results/emulator_validation.{json,md}``; docs/benchmarks.md records them.
Every slowdown here is EMULATED; the implied ones are computed from published ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from placer.collectors.hostmodel import binary_runner, measure_host_model  # noqa: E402
from placer.contracts.examples import example_bin_dir  # noqa: E402
from placer.contracts.host import this_host  # noqa: E402
from placer.emulator.host import from_model  # noqa: E402
from placer.emulator.load import load_profile  # noqa: E402
from placer.experiments.calibration import BENCHES, calibrate, compare  # noqa: E402
from placer.store import Store  # noqa: E402
from placer.tiers.specs import load_spec  # noqa: E402

LIMIT = 0.20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiers", nargs="+", default=["optane", "cxl"])
    ap.add_argument("--record", type=Path, help="write the measured inputs here (JSON)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args()
    bins = example_bin_dir(build=True)
    if bins is None:
        raise SystemExit("examples/bin not found")
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()[0]
    model = measure_host_model(binary_runner(bins), this_host())
    host = from_model(0, model)
    ref = load_spec("dram")
    results: list[dict[str, object]] = []
    recorded: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="placer-validate-") as tmp:
        os.environ["PLACER_DATA_DIR"] = tmp
        store = Store(f"sqlite:///{tmp}/placer.db")
        store.upgrade()
        rows = calibrate(store, bins, host, load_spec(args.tiers[0]), attempts=3)
        for row in rows:
            with store.session() as s:
                profile = load_profile(s, row.run_id)
            report = row.report
            recorded.append({"bench": row.bench, "report": report, "profile": profile.to_dict()})
            for tier in args.tiers:
                r = compare(row.bench, report, profile, host, load_spec(tier), ref)
                results.append(
                    {
                        "tier": tier,
                        "bench": row.bench,
                        "implied": r.implied,
                        "emulated": r.emulated,
                        "error": r.error,
                        "drift": row.drift,
                        "within": abs(r.error) <= LIMIT,
                    }
                )
        store.dispose()
    meta = {
        "date": started.isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "host_model": model.to_dict(),
    }
    if args.record:
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(
            json.dumps({"meta": meta, "benchmarks": recorded}, indent=1, sort_keys=True)
        )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "emulator_validation.json").write_text(
        json.dumps({"meta": meta, "rows": results}, indent=2, default=str)
    )
    lines = [
        f"Emulator validation, {meta['date']} on {meta['host']} ({meta['cpus']} CPUs, load "
        f"{load:.2f} before); host model: cache {model.effective_cache_bytes >> 20} MiB, "
        f"DRAM {model.dram_latency_ns:.0f} ns, read/write {model.read_bandwidth_gbps:.1f}/"
        f"{model.write_bandwidth_gbps:.1f} GB/s (best of samples, spread {model.spread:.0%})",
        "",
        "| tier | benchmark | implied by published ratios | emulated | error | drift "
        "| within 20% |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        drift = "" if r["drift"] is None else f"{r['drift']:+.0%}"
        lines.append(
            f"| {r['tier']} | {r['bench']} | {r['implied']:.2f}x | {r['emulated']:.2f}x | "
            f"{r['error']:+.0%} | {drift} | {'yes' if r['within'] else 'no'} |"
        )
    (args.out_dir / "emulator_validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["within"] for r in results) else 1


if __name__ == "__main__":
    assert set(BENCHES) == {"chase", "seqread", "seqwrite", "randupdate"}
    sys.exit(main())
