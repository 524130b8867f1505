"""Wall-time and CPU-time overhead of the placer shim on the example PageRank.

Runs ``examples/bin/pr`` natively and under the preloaded shim with page-poison sampling
off, at its default settings (10 ms period, cost capped at 1% of the program's CPU time by
``PLACER_SHIM_SAMPLE_BUDGET``), at set rates that sample about 1% and 10% of the large
objects' pages per second (no budget), and at the other settings docs/shim.md gives
(50 ms without a budget, about 1%; 2 ms under a 10% budget, about 10%); repeats every
configuration, interleaved so that background load hits all of them alike, and prints
medians and ratios side by side. Results go to ``benchmarks/results/shim_overhead.{json,md}``;
``docs/benchmarks.md`` records them.

How much is sampled is *measured* from each run's shim log (SAMPLE records), not assumed:

- ``watched/interval``: pages poisoned in an interval / pages of sampleable objects then
  live (objects of at least ``PLACER_SHIM_SAMPLE_MIN_SIZE``), averaged over intervals;
- ``sampled/s``: poisoned pages per second of run / time-averaged live sampleable pages.

The ~1% and ~10% settings are derived from the default run's log (how many sampleable
pages and objects PageRank has) and then checked by the same measurement. CPU time (user +
system of the program, sampler thread included, with ``OMP_WAIT_POLICY=passive``) is
reported beside wall time because it moves far less when other jobs share the cores,
and so is the shim's own count of what sampling cost (sampler thread CPU time + time in
the poison-fault handler + 2 us per fault for the kernel, from its STATS record), as a
share of the native run's CPU time;
"paired" ratios compare each run with the native run of the same round. The script also
times one protect+restore ``mprotect`` pair on this host, which predicts most of the
sampling cost (two per sampled page).

    python benchmarks/shim_overhead.py                  # scale 20, 5 repeats (~5 min idle)
    python benchmarks/shim_overhead.py --scale 16 --repeats 1 --out-dir /tmp/x   # smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout: collectors/ and examples/ import

DEFAULT_PERIOD_MS = 10
DEFAULT_SAMPLE_MIN = 1 << 20
MAX_PAGES_PER_OBJECT = 64  # the shim's MAX_SPAGES
FAULT_KERNEL_NS = 2000  # the shim's estimate of a poison fault's kernel part


def _examples_bin(name: str) -> Path:
    spec = importlib.util.spec_from_file_location(
        "_placer_examples_build", REPO / "examples" / "build.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.examples_bin(name)


@dataclass
class Config:
    name: str
    shim: bool
    settings: dict[str, int] = field(default_factory=dict)  # shim_env keyword arguments
    target: str = ""


@dataclass
class RunResult:
    config: str
    repeat: int
    wall_s: float
    cpu_s: float  # user + system time of the program (all threads, the sampler included)
    build_s: float
    kernel_s: float
    checksum: str
    log: dict[str, float] = field(default_factory=dict)


#: Cost of what page-poison sampling does per sampled page: protect one 4 KiB page of a
#: large mapping and restore it, while a sibling thread of the same process keeps running
#: (so each change also shoots down that CPU's TLB), as in a sampled multithreaded program.
MPROTECT_PROBE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
static atomic_int stop;
static char *other;
static const size_t sz = 64UL << 20;
static void *sibling(void *a) {
  (void)a;
  unsigned long x = 1, s = 0;
  while (!atomic_load(&stop))
    for (int i = 0; i < 10000; i++) {
      x = x * 6364136223846793005UL + 1;
      s += other[(x >> 20) % sz];
    }
  return (void *)s;
}
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}
int main(int argc, char **argv) {
  int with_sibling = atoi(argv[1]), n = atoi(argv[2]);
  char *buf = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  other = mmap(0, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  for (size_t i = 0; i < sz; i += 4096) buf[i] = other[i] = 1;
  pthread_t t;
  if (with_sibling) pthread_create(&t, 0, sibling, 0);
  unsigned long x = 7;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    x = x * 6364136223846793005UL + 1;
    char *pg = buf + ((x >> 24) % (sz / 4096)) * 4096;
    mprotect(pg, 4096, PROT_NONE);
    mprotect(pg, 4096, PROT_READ | PROT_WRITE);
  }
  double dt = now() - t0;
  atomic_store(&stop, 1);
  if (with_sibling) pthread_join(t, 0);
  printf("%.9f\n", dt / n);
  return 0;
}
"""


def mprotect_pair_cost(workdir: Path, pairs: int = 20000) -> dict[str, float] | None:
    """Median seconds per protect+restore pair, alone and with a running sibling thread."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    src, exe = workdir / "mprotect_probe.c", workdir / "mprotect_probe"
    src.write_text(MPROTECT_PROBE)
    built = subprocess.run([cc, "-O2", "-pthread", "-o", str(exe), str(src)], capture_output=True)
    if built.returncode != 0:
        return None
    out: dict[str, float] = {}
    for label, sib in (("alone_s", "0"), ("with_sibling_s", "1")):
        runs = [
            float(
                subprocess.run(
                    [str(exe), sib, str(pairs)], capture_output=True, text=True, check=True
                ).stdout
            )
            for _ in range(3)
        ]
        out[label] = statistics.median(runs)
    return out


def _shim_hash(library: Path) -> str | None:
    """Which shim source was measured (the hash its build embeds)."""
    from placer.collectors.shim.build import embedded_hash

    return embedded_hash(library)


def machine_info() -> dict[str, object]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_gib, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
    }


def log_metrics(pattern: Path, sample_min: int) -> dict[str, float]:
    """What the shim logged and sampled in one run (main process's log)."""
    from placer.collectors.shim.log import find_logs, read_log

    logs = find_logs(pattern)
    if not logs:
        raise RuntimeError(f"the shim wrote no log at {pattern}")
    log = read_log(logs[0])
    page = log.header.page_size
    start = log.header.start_ns
    end = log.end.time_ns if log.end else max([a.time_ns for a in log.allocs] + [start + 1])
    freed = {f.seq: f.time_ns for f in log.frees}
    big = [
        (a.time_ns, freed.get(a.seq, end), a.size // page)
        for a in log.allocs
        if a.size >= sample_min
    ]
    seconds = max((end - start) / 1e9, 1e-9)

    def live_pages(t: int) -> int:
        return sum(p for t0, t1, p in big if t0 <= t < t1)

    avg_live = sum(p * (min(t1, end) - max(t0, start)) for t0, t1, p in big) / (end - start)
    per_interval: dict[int, list[int]] = {}
    for s in log.samples:
        rec = per_interval.setdefault(s.interval, [s.start_ns, 0, 0])
        rec[0] = min(rec[0], s.start_ns)
        rec[1] += s.sampled_pages
        rec[2] += 1
    shares = [pages / lp for t, pages, _ in per_interval.values() if (lp := live_pages(t)) > 0]
    sampled = sum(s.sampled_pages for s in log.samples)
    return {
        "objects_logged": len(log.allocs),
        "sampleable_pages_avg": round(avg_live, 1),
        "sample_intervals": log.stats.get("sample_intervals", len(per_interval)),
        "sample_faults": log.stats.get("sample_faults", 0),
        "sampled_pages": sampled,
        "objects_per_interval": (
            statistics.mean(n for _, _, n in per_interval.values()) if per_interval else 0.0
        ),
        "watched_share_per_interval": statistics.mean(shares) if shares else 0.0,
        "sampled_share_per_second": sampled / seconds / avg_live if avg_live else 0.0,
        "faults_per_second": log.stats.get("sample_faults", 0) / seconds,
        # what sampling cost, as the shim's budget counts it (docs/shim-log.md, STATS)
        "sampling_cost_s": (
            log.stats.get("sampler_cpu_ns", 0)
            + log.stats.get("fault_ns", 0)
            + FAULT_KERNEL_NS * log.stats.get("sample_faults", 0)
        )
        / 1e9,
        "budget_skips": log.stats.get("budget_skips", 0),
        "dropped_records": log.stats.get("dropped_records", 0),
        "truncated": int(log.truncated),
    }


def run_once(
    cmd: list[str], cfg: Config, repeat: int, workdir: Path, wait_policy: str = "passive"
) -> RunResult:
    env = dict(os.environ)
    env["OMP_WAIT_POLICY"] = wait_policy
    slug = re.sub(r"[^a-z0-9]+", "-", cfg.name.lower()).strip("-")
    pattern = workdir / f"{slug}.{repeat}.%p.log"
    if cfg.shim:
        from placer.collectors.shim.library import shim_env

        env.update(shim_env(pattern, **cfg.settings))
    else:
        env.pop("LD_PRELOAD", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{cfg.name}: {' '.join(cmd)} exited {done.returncode}: {done.stderr}")
    fields = dict(re.findall(r"(\w+)=(\S+)", done.stdout))
    result = RunResult(
        config=cfg.name,
        repeat=repeat,
        wall_s=wall,
        cpu_s=cpu,
        build_s=float(fields["build_s"]),
        kernel_s=float(fields["time_s"]),
        checksum=fields["checksum"],
    )
    if cfg.shim:
        sample_min = cfg.settings.get("sample_min_size", DEFAULT_SAMPLE_MIN)
        result.log = log_metrics(pattern, sample_min)
    for f in workdir.glob(f"{slug}.{repeat}.*"):
        f.unlink()
    return result


def settings_for_share(share: float, default_log: dict[str, float]) -> dict[str, int]:
    """Shim settings that poison about ``share`` of the sampleable pages per second."""
    pages = default_log["sampleable_pages_avg"]
    objects = max(1, round(default_log["objects_per_interval"]))
    per_second = share * pages
    period = DEFAULT_PERIOD_MS
    per_object = math.ceil(per_second * period / 1000 / objects)
    if per_object > MAX_PAGES_PER_OBJECT:  # shorten the period instead
        per_object = MAX_PAGES_PER_OBJECT
        period = max(1, math.floor(per_object * objects * 1000 / per_second))
    per_object = max(1, per_object)
    return {
        "sample_period_ms": period,
        "sample_pages": per_object,
        "sample_max_pages": per_object * (objects + 2),
        "sample_budget": 0,  # a set rate, not capped by the cost budget
    }


def summarize(
    configs: list[Config], results: list[RunResult], pair_cost: float | None
) -> list[dict[str, object]]:
    by = {c.name: [r for r in results if r.config == c.name] for c in configs}
    native_of = {r.repeat: r for r in by["native"]}
    base = statistics.median(r.wall_s for r in by["native"])
    base_kernel = statistics.median(r.kernel_s for r in by["native"])
    base_cpu = statistics.median(r.cpu_s for r in by["native"])
    rows = []
    for c in configs:
        rs = by[c.name]
        walls = [r.wall_s for r in rs]
        med = statistics.median(walls)
        kernel = statistics.median(r.kernel_s for r in rs)
        row: dict[str, object] = {
            "config": c.name,
            "target": c.target,
            "settings": c.settings,
            "repeats": len(rs),
            "wall_median_s": round(med, 3),
            "wall_min_s": round(min(walls), 3),
            "wall_max_s": round(max(walls), 3),
            "ratio": round(med / base, 4),
            "overhead_pct": round((med / base - 1) * 100, 2),
            "cpu_median_s": round(statistics.median(r.cpu_s for r in rs), 3),
            "cpu_ratio": round(statistics.median(r.cpu_s for r in rs) / base_cpu, 4),
            "kernel_median_s": round(kernel, 3),
            "kernel_ratio": round(kernel / base_kernel, 4),
            "build_median_s": round(statistics.median(r.build_s for r in rs), 3),
            # each run against the native run of the same round: drifting load cancels
            "paired_wall_ratio": round(
                statistics.median(r.wall_s / native_of[r.repeat].wall_s for r in rs), 4
            ),
            "paired_cpu_ratio": round(
                statistics.median(r.cpu_s / native_of[r.repeat].cpu_s for r in rs), 4
            ),
        }
        if c.shim:
            for key in (
                "watched_share_per_interval",
                "sampled_share_per_second",
                "faults_per_second",
                "sample_intervals",
                "objects_logged",
                "sampled_pages",
                "budget_skips",
            ):
                row[key] = round(statistics.median(float(r.log[key]) for r in rs), 6)
            # the shim's own count of what sampling cost, against the native run's CPU
            row["sampling_cost_share"] = round(
                statistics.median(r.log["sampling_cost_s"] / native_of[r.repeat].cpu_s for r in rs),
                5,
            )
            if pair_cost:
                # CPU the protect+restore pairs alone cost, as a share of native CPU time
                row["predicted_cpu_ratio"] = round(
                    statistics.median(
                        1 + r.log["sampled_pages"] * pair_cost / native_of[r.repeat].cpu_s
                        for r in rs
                    ),
                    4,
                )
        rows.append(row)
    return rows


def markdown(doc: dict[str, object]) -> str:
    m = doc["machine"]
    assert isinstance(m, dict)
    cost = doc.get("mprotect_pair_cost")
    lines = [
        f"PageRank `{doc['command']}` (OMP_WAIT_POLICY={doc['omp_wait_policy']}), "
        f"{doc['repeats']} repeats per configuration, interleaved; {m['date_utc']}, "
        f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
        f"load average at start {m['load_avg_start']}, at end {m['load_avg_end']}.",
        "",
        "| configuration | shim settings | median wall s (min–max) | wall ratio (paired) "
        "| median CPU s | CPU ratio (paired) | kernel ratio | watched/interval | sampled/s "
        "| faults/s | CPU ratio predicted from mprotect cost | sampling cost (shim's count) "
        "/ native CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = doc["rows"]
    assert isinstance(rows, list)
    for r in rows:
        settings = ", ".join(f"{k}={v}" for k, v in r["settings"].items())
        wall = f"{r['wall_median_s']:.2f} ({r['wall_min_s']:.2f}–{r['wall_max_s']:.2f})"
        head = (
            f"| {r['config']} | {settings or ('—' if r['config'] == 'native' else 'defaults')} "
            f"| {wall} | {r['ratio']:.3f} ({r['paired_wall_ratio']:.3f}) "
            f"| {r['cpu_median_s']:.2f} | {r['cpu_ratio']:.3f} ({r['paired_cpu_ratio']:.3f}) "
            f"| {r['kernel_ratio']:.3f} "
        )
        if r["config"] == "native":
            lines.append(head + "| — | — | — | — | — |")
            continue
        predicted = r.get("predicted_cpu_ratio")
        lines.append(
            head + f"| {100 * r['watched_share_per_interval']:.3g}% "
            f"| {100 * r['sampled_share_per_second']:.3g}% | {r['faults_per_second']:.0f} "
            f"| {f'{predicted:.3f}' if predicted else '—'} "
            f"| {100 * r['sampling_cost_share']:.2f}% |"
        )
    lines.append("")
    if isinstance(cost, dict):
        lines.append(
            f"One protect+restore pair (`mprotect` of a 4 KiB page and back) costs "
            f"{1e6 * cost['alone_s']:.1f} µs alone and {1e6 * cost['with_sibling_s']:.1f} µs "
            "with a sibling thread running (TLB shootdown), measured in the same run."
        )
    lines.append(f"Output identical in every run (PageRank checksum): {doc['output_identical']}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=int, default=20, help="Kronecker scale (default 20)")
    p.add_argument("--degree", type=int, default=16, help="edges per vertex (default 16)")
    p.add_argument("--iters", type=int, default=20, help="PageRank iterations (default 20)")
    p.add_argument("--threads", type=int, default=2, help="OpenMP threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="runs per configuration")
    p.add_argument(
        "--wait-policy",
        choices=["passive", "active"],
        default="passive",
        help="OMP_WAIT_POLICY for every run (default passive: idle threads sleep instead of "
        "spinning, so CPU time counts work, not waiting for descheduled siblings)",
    )
    p.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.repeats < 1 or not 1 <= args.scale <= 30:
        p.error("--repeats must be >= 1 and --scale in [1, 30]")

    from placer.collectors.shim.library import shim_path

    shim = shim_path()  # builds it if needed, before any timing
    pr = _examples_bin("pr")
    cmd = [str(pr), "-g", str(args.scale), "-k", str(args.degree), "-i", str(args.iters)]
    cmd += ["-e", "0", "-t", str(args.threads)]
    machine = machine_info()
    print(f"shim: {shim}\ncommand: {' '.join(cmd)}\nmachine: {machine}", flush=True)

    configs = [
        Config("native", shim=False),
        Config("shim, sampling off", shim=True, settings={"sample_period_ms": 0}),
        Config("shim, default", shim=True, target="<= 5% overhead"),
    ]
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="placer-shim-bench-") as tmp:
        work = Path(tmp)
        pair_cost = mprotect_pair_cost(work)
        print(f"mprotect protect+restore pair: {pair_cost}", flush=True)
        # One default run first: it tells how many pages and objects PageRank samples.
        warm = run_once(cmd, configs[2], -1, work, args.wait_policy)
        for share, label in ((0.01, "~1%"), (0.10, "~10%")):
            configs.append(
                Config(
                    f"shim, {label} sampled/s",
                    shim=True,
                    settings=settings_for_share(share, warm.log),
                    target=f"{label} of sampleable pages per second",
                )
            )
        # The other settings docs/shim.md gives: a slow period without the cost budget
        # (about 1%), and a fast period under a 10% budget (about 10%).
        for period, budget, label in ((50, 0, "~1%"), (2, 10, "~10%")):
            configs.append(
                Config(
                    f"shim, period {period} ms",
                    shim=True,
                    settings={"sample_period_ms": period, "sample_budget": budget},
                    target=f"{label} overhead (docs/shim.md)",
                )
            )
        for rep in range(args.repeats):
            order = configs[rep % len(configs) :] + configs[: rep % len(configs)]
            for cfg in order:
                r = run_once(cmd, cfg, rep, work, args.wait_policy)
                results.append(r)
                extra = (
                    f" sampled/s={100 * r.log['sampled_share_per_second']:.2f}%" if r.log else ""
                )
                print(
                    f"  [{rep + 1}/{args.repeats}] {cfg.name:24s} {r.wall_s:7.2f} s{extra}",
                    flush=True,
                )
    machine["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    checksums = {r.checksum for r in results} | {warm.checksum}
    doc: dict[str, object] = {
        "benchmark": "shim_overhead",
        "command": " ".join([Path(cmd[0]).name, *cmd[1:]]),
        "machine": machine,
        "repeats": args.repeats,
        "omp_wait_policy": args.wait_policy,
        "shim": {"path": str(shim), "source_sha256": _shim_hash(shim)},
        "output_identical": "yes" if len(checksums) == 1 else f"NO: {sorted(checksums)}",
        "mprotect_pair_cost": pair_cost,
        "rows": summarize(configs, results, pair_cost["with_sibling_s"] if pair_cost else None),
        "runs": [asdict(r) for r in results],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "shim_overhead.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = markdown(doc)
    (args.out_dir / "shim_overhead.md").write_text(md + "\n")
    print()
    print(md)
    return 0 if len(checksums) == 1 else 1


if __name__ == "__main__":
    if shutil.which("make") is None:
        sys.exit("shim_overhead: 'make' is needed to build the examples")
    sys.exit(main())
