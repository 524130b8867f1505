"""Calibration: emulate the four microbenchmarks all-slow and compare with the published ratios.

Each benchmark is profiled by the real collectors (shim + perf, then a DHAT pass), then
emulated with every object in the slow tier. What the published ratios *imply* for it
comes from the benchmark's own report and the spec alone, phase by phase (:func:`phases`):
``implied = (T + sum_phase t_phase (r_phase - 1)) / T``, with each phase's DRAM time on this
host (measured, or bytes over this host's bandwidth where the phase is a plain stream) and
the published ratio for its access kind (docs/emulator.md, Calibration)::

    python -m placer.experiments.calibration --store URL [--tier optane]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.collectors.hostmodel import parse_result
from placer.config import resolve_store_url
from placer.contracts.examples import example_bin_dir
from placer.emulator.host import reference, stored
from placer.emulator.load import load_profile
from placer.emulator.model import LINE, HostDram, RunProfile, costs, ratios
from placer.experiments.deep import dhat_pass
from placer.experiments.session import profile_pair, quiet_fds
from placer.store import Store
from placer.tiers.specs import TierSpec, load_spec

BENCHES = {
    "chase": ["-m", "128M", "-i", "2000000"],
    "seqread": ["-m", "128M", "-i", "32"],
    "seqwrite": ["-m", "128M", "-i", "16"],
    "randupdate": ["-m", "128M", "-i", "8000000"],
}


@dataclass(frozen=True)
class Phase:
    """One phase of a benchmark run: its DRAM time here and the published ratio it takes."""

    name: str
    seconds: float
    ratio: float
    basis: str  # where ``seconds`` comes from: the benchmark's own clock, or bytes / bandwidth

    @property
    def penalty(self) -> float:
        return self.seconds * (self.ratio - 1.0)


@dataclass
class CalibrationRow:
    bench: str
    run_id: int
    wall_s: float
    loop_s: float
    ratio: float
    implied: float
    emulated: float
    host: HostDram | None = None
    drift: float | None = None  # benchmark's own rate vs the host constants (see drift())
    phases: list[Phase] = field(default_factory=list)
    report: dict[str, float] = field(default_factory=dict)  # the benchmark's own result line

    @property
    def error(self) -> float:
        return self.emulated / self.implied - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "run": self.run_id,
            "wall_s": self.wall_s,
            "loop_s": self.loop_s,
            "ratio": self.ratio,
            "implied": self.implied,
            "emulated": self.emulated,
            "error": self.error,
            "phases": [
                {"name": p.name, "seconds": p.seconds, "ratio": p.ratio, "basis": p.basis}
                for p in self.phases
            ],
        }


def _random_rmw(
    name: str, t: float, lines: float, r: dict[str, float], host: HostDram
) -> list[Phase]:
    """A phase of random read-modify-writes taking ``t`` s and dirtying ``lines`` random lines.

    Each dirty line is written back once (``lines x 64 B / B_w``, random-write ratio, i.e.
    with the tier's write amplification); the rest of the phase waited for random reads
    (latency ratio: with the same memory-level parallelism, throughput scales with latency).
    """
    t_wb = min(t, lines * LINE / (host.write_gbps * 1e9))
    return [
        Phase(f"{name}: random writebacks", t_wb, r["write_random"], "lines x 64 B / B_w"),
        Phase(f"{name}: random reads", t - t_wb, r["latency"], f"{name} time - writebacks"),
    ]


def phases(
    bench: str, report: dict[str, float], r: dict[str, float], host: HostDram
) -> list[Phase]:
    """Every memory phase of one benchmark run, with the published ratio for each.

    Every benchmark first fills its ``S``-byte buffer front to back: a write stream, charged
    its bandwidth time ``S / B_w`` (its measured ``fill_s`` is mostly first-touch page
    faults, kernel work the tier does not slow down, so no more than ``fill_s``). Then:
    chase shuffles (Sattolo: a descending sweep reading and writing every node, plus one
    random read-modify-write of a node per step) and chases (latency); seqread / seqwrite
    stream (read / write bandwidth); randupdate updates at random (random reads plus one
    dirty random line each) and reads the table once for its checksum (read stream).
    """
    size = report["bytes"]
    b_r, b_w = host.read_gbps * 1e9, host.write_gbps * 1e9
    loop = report["time_s"]
    fill_s = report.get("fill_s")
    fill = size / b_w if fill_s is None else min(fill_s, size / b_w)
    out = [Phase("fill", fill, r["write_bandwidth"], "S / B_w")]
    if bench == "chase":
        shuffle = report.get("setup_s", 0.0)
        sweep_r, sweep_w = min(shuffle, size / b_r), min(shuffle, size / b_w)
        rest = max(0.0, shuffle - sweep_r - sweep_w)
        out += [
            Phase("shuffle: sweep reads", sweep_r, r["read_bandwidth"], "S / B_r"),
            Phase("shuffle: sweep writebacks", sweep_w, r["write_bandwidth"], "S / B_w"),
            *_random_rmw("shuffle", rest, size / LINE - 1, r, host),
            Phase("chase", loop, r["latency"], "time_s"),
        ]
    elif bench == "seqread":
        out.append(Phase("read passes", loop, r["read_bandwidth"], "time_s"))
    elif bench == "seqwrite":
        out.append(Phase("write passes", loop, r["write_bandwidth"], "time_s"))
    elif bench == "randupdate":
        out += _random_rmw("updates", loop, report["accesses"], r, host)
        out.append(Phase("checksum pass", size / b_r, r["read_bandwidth"], "S / B_r"))
    else:
        raise KeyError(bench)
    return out


def implied_ratio(
    bench: str, report: dict[str, float], r: dict[str, float], host: HostDram
) -> float:
    """The published ratio for the benchmark's timed loop (random update: read + write blend)."""
    if bench == "chase":
        return r["latency"]
    if bench == "seqread":
        return r["read_bandwidth"]
    if bench == "seqwrite":
        return r["write_bandwidth"]
    if bench == "randupdate":
        loop = report["time_s"]
        parts = _random_rmw("updates", loop, report["accesses"], r, host)
        return sum(p.seconds * p.ratio for p in parts) / loop if loop > 0 else r["latency"]
    raise KeyError(bench)


def drift(bench: str, report: dict[str, float], host: HostDram) -> float | None:
    """How far the benchmark's own loop rate is from the host constant it should match.

    The chase's ns/access *is* a DRAM latency measurement, seqread/seqwrite's GB/s a
    bandwidth one; on a shared host the constants measured around the run can disagree
    with what the run itself saw. A calibration is only meaningful when they agree.
    """
    if bench == "chase":
        return report["ns_per_access"] / host.latency_ns - 1
    if bench == "seqread":
        return host.read_gbps / report["gb_per_s"] - 1
    if bench == "seqwrite":
        return host.write_gbps / report["gb_per_s"] - 1
    return None


def calibrate(
    store: Any,
    bin_dir: Path,
    host: HostDram,
    spec: TierSpec | None = None,
    benches: dict[str, list[str]] | None = None,
    attempts: int = 3,
    max_drift: float = 0.25,
) -> list[CalibrationRow]:
    """Profile and emulate each benchmark against the fixed host model ``host``.

    A benchmark whose own loop rate drifts more than ``max_drift`` from the host model is
    run again (up to ``attempts`` times); the try with the smallest drift is kept (and gets
    the DHAT pass), and its ``drift`` says whether the host was quiet enough.
    """
    spec = spec or load_spec("optane")
    ref = load_spec("dram")
    rows = []
    for bench, args in (benches or BENCHES).items():
        cmd = [str(bin_dir / bench), *args]
        # (|drift|, run id, report, host constants around the run, drift)
        best: tuple[float, int, dict[str, float], HostDram, float | None] | None = None
        for _ in range(max(attempts, 1)):
            with tempfile.TemporaryDirectory(prefix="placer-calib-") as tmp:
                out = Path(tmp) / "out.txt"
                with quiet_fds(out):
                    run_id, _ = profile_pair(store, cmd, bench, deep=False)
                seen = host
                report = parse_result(
                    next(
                        ln
                        for ln in out.read_text(errors="replace").splitlines()
                        if ln.startswith(f"{bench}:")
                    )
                )
            d = drift(bench, report, seen)
            score = 0.0 if d is None else abs(d)
            if best is None or score < best[0]:
                best = (score, run_id, report, seen, d)
            if score <= max_drift:
                break
        assert best is not None
        _, run_id, report, host, d = best  # the try whose constants held best
        with quiet_fds(Path(tempfile.gettempdir()) / "placer-calib-dhat.log"):
            dhat_pass(store, run_id, cmd)
        with store.session() as s:
            profile = load_profile(s, run_id)
        rows.append(compare(bench, report, profile, host, spec, ref, drift=d))
    return rows


def compare(
    bench: str,
    report: dict[str, float],
    profile: RunProfile,
    host: HostDram,
    spec: TierSpec,
    ref: TierSpec,
    *,
    drift: float | None = None,
) -> CalibrationRow:
    """Emulated all-slow slowdown of one benchmark run vs what the published ratios imply.

    Pure: the same profile, report and host model give the same row (the test runs it on
    recorded runs; ``benchmarks/emulator_validation.py`` on live ones).
    """
    cs, _ = costs(profile, spec, ref, host)
    wall = profile.wall_seconds
    emulated = (wall + sum(c.penalty_s for c in cs.values())) / wall
    rr = ratios(spec, ref, profile.threads)
    ratio = implied_ratio(bench, report, rr, host)
    ph = phases(bench, report, rr, host)
    implied = (wall + sum(p.penalty for p in ph)) / wall
    loop = min(report["time_s"], wall)
    return CalibrationRow(
        bench, profile.run_id, wall, loop, ratio, implied, emulated, host, drift, ph, report
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None)
    ap.add_argument("--tier", default="optane")
    ap.add_argument(
        "--reference-dram", action="store_true", help="the reference DRAM spec, not this host"
    )
    args = ap.parse_args(argv)
    bins = example_bin_dir(build=True)
    assert bins is not None
    store = Store(resolve_store_url(args.store))
    store.ensure_schema()
    if args.reference_dram:
        host = reference()
    else:
        with store.session() as s:
            host = stored(s)  # `placer calibrate` first
    rows = calibrate(store, bins, host, load_spec(args.tier))
    print(
        "| benchmark | host DRAM ns, read/write GB/s | drift | run wall s | timed loop s | "
        "loop ratio | other phases: DRAM s x ratio | implied slowdown | emulated slowdown "
        "| error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        h = r.host or host
        others = ", ".join(
            f"{p.name} {p.seconds:.3f} x {p.ratio:.1f}"
            for p in r.phases
            if p.basis != "time_s" and not p.name.startswith("updates")
        )
        print(
            f"| {r.bench} | {h.latency_ns:.0f}, {h.read_gbps:.1f}/{h.write_gbps:.1f} | "
            f"{'' if r.drift is None else f'{r.drift:+.0%}'} | {r.wall_s:.2f} | "
            f"{r.loop_s:.2f} | {r.ratio:.2f} | {others} | {r.implied:.2f} | "
            f"{r.emulated:.2f} | {r.error:+.0%} |"
        )
    store.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
