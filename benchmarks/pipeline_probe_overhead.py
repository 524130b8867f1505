"""Probe overhead: throughput of each example pipeline with probes on vs off.

For every example pipeline (python, torchdata, dataloader engines; ``small`` data) and two
configs (naive; and every parallel knob = cores with prefetch 2, or ``num_workers`` =
cores for the DataLoader), runs ``measure()`` alternately with and without probes,
``--repeats`` times each, and reports the median samples/s of both and the overhead
``1 - on/off``. Also times one probed call of an empty function (the fixed cost per
element per stage). Writes a JSON result and, with ``--markdown FILE``, replaces the
"## Pipeline probe overhead" section of that file.

    python benchmarks/pipeline_probe_overhead.py --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

HEADING = "## Pipeline probe overhead"


def per_call_ns(n: int = 200_000) -> tuple[float, float]:
    """ns per call of an empty function: bare, and through a probe."""
    from placer.collectors.pipeline.probe import Probes

    def f(x: int) -> int:
        return x

    wrapped = Probes().wrap("f", f)
    best_bare = best_probed = float("inf")
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for i in range(n):
            f(i)
        best_bare = min(best_bare, (time.perf_counter_ns() - t0) / n)
        t0 = time.perf_counter_ns()
        for i in range(n):
            wrapped(i)
        best_probed = min(best_probed, (time.perf_counter_ns() - t0) / n)
    return best_bare, best_probed


def _identity(x: object) -> object:
    return x


def per_element_overhead_us(
    engine: str, parallel: bool, n: int = 20_000, repeats: int = 5
) -> float:
    """Process CPU µs that probes add per element per stage, on a pipeline of identity stages.

    Runs one epoch in this process (DataLoader without workers, so all CPU is ours) with
    probes off and on, ``repeats`` times each, and takes the minimum CPU time of each
    (the minimum is what the work costs when no neighbour interferes).
    """
    from placer.collectors.pipeline.adapters import pipeline_def
    from placer.collectors.pipeline.probe import Probes
    from placer.collectors.pipeline.spec import PipelineSpec, StageSpec

    stages = [StageSpec("read", _identity, kind="source")]
    stages += [StageSpec(f"map{i}", _identity) for i in range(4)]
    stages.append(StageSpec("collate", list, kind="collate"))
    spec = PipelineSpec("overhead", lambda: list(range(n)), stages, batch_size=32)
    defn = pipeline_def(spec, engine)
    cfg = dict(defn.naive_config)
    if parallel and engine != "dataloader":
        cfg.update({k: 2 for k in defn.knobs if k.startswith("parallelism.")}, prefetch=2)
    best = {False: float("inf"), True: float("inf")}
    for _ in range(repeats):
        for use in (False, True):
            pipe = defn.build(cfg, Probes() if use else None)
            c0 = time.process_time()
            for _batch in pipe:
                pass
            best[use] = min(best[use], time.process_time() - c0)
    calls = n * (len(stages) - 1) + n / 32  # element stages + the collate
    return 1e6 * (best[True] - best[False]) / calls


def parallel_config(defn) -> dict:  # type: ignore[no-untyped-def]
    cores = len(os.sched_getaffinity(0))
    if defn.engine == "dataloader":
        return {"num_workers": cores, "prefetch_factor": 2, "persistent_workers": True}
    cfg = {k: cores for k in defn.knobs if k.startswith("parallelism.")}
    cfg["prefetch"] = 2
    return cfg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pipelines", nargs="*", help="example names (default: all but tf.data)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "probe_overhead.json"))
    ap.add_argument("--markdown", help="replace the probe-overhead section of this file")
    args = ap.parse_args(argv)

    from placer.collectors.pipeline.measure import host_facts, measure
    from placer.collectors.pipeline.registry import example_names, load_pipeline

    names = args.pipelines or [n for n in example_names() if "tfdata" not in n]
    bare, probed = per_call_ns()
    print(f"empty call: {bare:.0f} ns bare, {probed:.0f} ns probed", flush=True)
    unit: dict[str, float] = {}
    for engine in ("python", "torchdata", "dataloader"):
        for parallel in (False, True):
            if engine == "dataloader" and parallel:
                continue
            key = f"{engine}-{'parallel' if parallel else 'naive'}"
            unit[key] = per_element_overhead_us(engine, parallel)
            print(f"probe CPU per element per stage, {key}: {unit[key]:.2f} us", flush=True)
    rows = []
    for name in names:
        defn = load_pipeline(name)
        host = host_facts(defn.source)
        for label, cfg in (("naive", defn.naive_config), ("parallel", parallel_config(defn))):
            on: list[float] = []
            off: list[float] = []
            cpu = {True: [], False: []}  # type: ignore[var-annotated]
            for rep in range(args.repeats):
                order = ((False, off), (True, on)) if rep % 2 == 0 else ((True, on), (False, off))
                for use, bucket in order:
                    m = measure(
                        defn,
                        cfg,
                        max_batches=100_000,
                        max_seconds=args.seconds,
                        warmup_batches=3,
                        probes=use,
                        host=host,
                    )
                    if m.status != "ok":
                        raise SystemExit(f"{name} {label}: {m.error}")
                    bucket.append(m.samples_per_second)
                    if use:
                        last_on = m
                    cpu[use].append(1e6 * m.process_cpu_seconds / max(1, m.samples))
            row = {
                "pipeline": name,
                "config": label,
                "off": statistics.median(off),
                "on": statistics.median(on),
                "off_runs": off,
                "on_runs": on,
                "cpu_us_per_sample_off": statistics.median(cpu[False]),
                "cpu_us_per_sample_on": statistics.median(cpu[True]),
            }
            row["overhead"] = 1 - row["on"] / row["off"]
            # deterministic estimate: probed stage-calls per sample x CPU per call
            # (identity-stage pipeline, min of runs) / CPU per sample without probes (min)
            calls = sum(s.elements_out for s in last_on.stages if s.name != "batch")
            calls_per_sample = calls / max(1, last_on.samples)
            engine_key = f"{defn.engine}-{label if defn.engine != 'dataloader' else 'naive'}"
            row["probe_calls_per_sample"] = calls_per_sample
            row["cpu_us_per_sample_off_min"] = min(cpu[False])
            row["estimated_overhead"] = (
                calls_per_sample * unit[engine_key] / row["cpu_us_per_sample_off_min"]
            )
            row["cpu_overhead"] = row["cpu_us_per_sample_on"] / row["cpu_us_per_sample_off"] - 1
            rows.append(row)
            print(
                f"{name:22s} {label:8s} off {row['off']:10.0f}/s on {row['on']:10.0f}/s "
                f"overhead {100 * row['overhead']:+.1f}%  cpu/sample "
                f"{row['cpu_us_per_sample_off']:.1f} -> {row['cpu_us_per_sample_on']:.1f} us "
                f"({100 * row['cpu_overhead']:+.1f}%)",
                flush=True,
            )
    result = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.node()} {len(os.sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}",
        "repeats": args.repeats,
        "seconds": args.seconds,
        "empty_call_ns": {"bare": bare, "probed": probed},
        "probe_cpu_us_per_element_stage": unit,
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    if args.markdown:
        write_markdown(Path(args.markdown), result)
    return 0


def write_markdown(path: Path, r: dict) -> None:
    worst = max(row["overhead"] for row in r["rows"])
    median = statistics.median(row["overhead"] for row in r["rows"])
    lines = [
        HEADING,
        "",
        f"`python benchmarks/pipeline_probe_overhead.py` — {r['date']}, {r['host']}; "
        f"median of {r['repeats']} runs of {r['seconds']:.0f} s each, probes off and on "
        "alternating (order swapped every repeat), `small` example data. The host is shared "
        "(other jobs ran at the same time), so single differences of a few percent are "
        "within run-to-run noise; the median over all rows is the better summary.",
        "",
        f"Fixed cost: an empty function takes {r['empty_call_ns']['bare']:.0f} ns per call bare "
        f"and {r['empty_call_ns']['probed']:.0f} ns through a probe (best of 5 × 200 000). "
        "Probe CPU per element per stage, measured on a pipeline of identity stages (CPU "
        "time with probes minus without, minimum of 5 epochs of 20 000 elements each): "
        + ", ".join(f"{k} {v:.2f} µs" for k, v in r["probe_cpu_us_per_element_stage"].items())
        + ". The last column multiplies that by the probed stage calls per sample of each "
        "example and divides by its CPU per sample without probes (minimum over runs): the "
        "probes' own share of the work, independent of what the neighbours did.",
        "",
        "| pipeline | config | off (samples/s) | on (samples/s) | throughput overhead "
        "| CPU µs/sample off → on | CPU overhead | probe CPU estimate |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        lines.append(
            f"| {row['pipeline']} | {row['config']} | {row['off']:.0f} | {row['on']:.0f} "
            f"| {100 * row['overhead']:+.1f}% | {row['cpu_us_per_sample_off']:.1f} → "
            f"{row['cpu_us_per_sample_on']:.1f} | {100 * row['cpu_overhead']:+.1f}% "
            f"| {100 * row['estimated_overhead']:.2f}% |"
        )
    cpu_median = statistics.median(row["cpu_overhead"] for row in r["rows"])
    est_worst = max(row["estimated_overhead"] for row in r["rows"])
    lines += [
        "",
        f"Median throughput overhead {100 * median:+.1f}% (worst row {100 * worst:+.1f}%); "
        f"median CPU-per-sample overhead {100 * cpu_median:+.1f}% (CPU of the measuring "
        "process tree, workers included, per sample: less sensitive to neighbours than "
        "throughput). Negative numbers mean the probed runs were faster, i.e. noise. "
        f"Probe CPU estimate: at most {100 * est_worst:.2f}% of a sample's CPU. Raw runs: "
        "`benchmarks/results/probe_overhead.json`.",
        "",
    ]
    section = "\n".join(lines)
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if HEADING in text:
        start = text.index(HEADING)
        nxt = text.find("\n## ", start + len(HEADING))
        text = text[:start] + section + (text[nxt + 1 :] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
