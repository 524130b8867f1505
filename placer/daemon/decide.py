"""What the daemon decides: tiers for live objects, and the next knobs of a pipeline.

Objects: :class:`ObjectTable` keeps the live objects of one job (from the shim log, or
from ``/proc/PID/maps`` for a process without the shim) with their recent page-poison
samples, computes the same scale-free features as :func:`placer.placement.features.run_features`
(only what a production run collects cheaply), scores them with the current placement
model (the newest trained one, else the shipped default) and picks the DRAM set with the
planner's knapsack on the predicted penalty under the job's DRAM budget.

Pipelines: :class:`PipelineTuner` runs Optuna's ask-and-tell loop over the knob space the
job declared: every report tells the measured throughput of the knobs in force and asks
for the next ones, which the daemon sends back for the job to apply at its next safe point.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from collectors.pipeline.api import (
    ChoiceKnob,
    HostFacts,
    IntKnob,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
)
from placer.errors import InvalidInputError
from placer.placement.planner import knapsack, parse_budget
from tuners.analysis import analyze, config_from_analysis

PAGE = 4096
#: Samples kept per object (a sliding window: the daemon ranks recent behaviour).
SAMPLE_WINDOW = 256
#: Without the shim, anonymous mappings at least this big are the objects.
VMA_MIN_BYTES = 1 << 20


@dataclass
class LiveObject:
    key: str  # "s<seq>" (shim allocation) or "v<start>" (mapping)
    address: int
    size: int
    site: str  # shim site hash as hex, or the mapping's name
    alloc_ns: int
    samples: deque[tuple[int, int, int, int]] = field(
        default_factory=lambda: deque(maxlen=SAMPLE_WINDOW)
    )  # (interval, sampled, touched, written)
    #: perf mem windows: (samples, llc_misses, latency_sum over loads, loads, tlb_misses)
    mem: deque[tuple[int, int, float, int, int]] = field(
        default_factory=lambda: deque(maxlen=SAMPLE_WINDOW)
    )
    tier: str | None = None  # tier the daemon last put it in
    score: float | None = None
    penalty: float | None = None
    migrated_bytes: int = 0

    def describe(self) -> dict[str, Any]:
        dens = [t / s for _, s, t, _ in self.samples if s]
        return {
            "object": self.key,
            "address": hex(self.address),
            "size_bytes": self.size,
            "site": self.site,
            "tier": self.tier,
            "score": None if self.score is None else round(self.score, 6),
            "predicted_penalty": None if self.penalty is None else round(self.penalty, 8),
            "density_mean": round(sum(dens) / len(dens), 4) if dens else None,
            "samples": len(self.samples),
            "perf_mem_samples": sum(m[0] for m in self.mem),
            "migrated_bytes": self.migrated_bytes,
        }


@dataclass
class Decision:
    obj: LiveObject
    tier: str
    previous: str | None
    rank: int
    reason: str


class ObjectTable:
    """Live objects of one job, indexed by allocation seq (shim) or mapping start."""

    def __init__(self) -> None:
        self.objects: dict[str, LiveObject] = {}
        self.by_seq: dict[int, LiveObject] = {}
        self.t0_ns: int | None = None
        self.site_allocs: dict[str, int] = {}
        self.changed = False  # something new since the last ranking
        self.freed = 0

    # -- input -----------------------------------------------------------------------
    def add_alloc(self, seq: int, address: int, size: int, site: int, time_ns: int) -> None:
        key = f"s{seq}"
        obj = LiveObject(key, address, size, f"{site:016x}", time_ns)
        self.objects[key] = obj
        self.by_seq[seq] = obj
        self.site_allocs[obj.site] = self.site_allocs.get(obj.site, 0) + 1
        self.t0_ns = time_ns if self.t0_ns is None else min(self.t0_ns, time_ns)
        self.changed = True

    def free(self, seq: int) -> None:
        obj = self.by_seq.pop(seq, None)
        if obj is not None:
            self.objects.pop(obj.key, None)
            self.freed += 1
            self.changed = True

    def sample(self, seq: int, interval: int, sampled: int, touched: int, written: int) -> None:
        obj = self.by_seq.get(seq)
        if obj is not None:
            obj.samples.append((interval, sampled, touched, written))
            self.changed = True

    def mem_window(self, counts: dict[str, Any]) -> None:
        """One perf mem window's per-object counts (:class:`~placer.daemon.perfmem.ObjectMem`)."""
        for key, c in counts.items():
            obj = self.objects.get(key)
            if obj is not None and c.samples:
                obj.mem.append((c.samples, c.llc_misses, c.latency_sum, c.loads, c.tlb_misses))
                self.changed = True

    def sync_mappings(self, regions: list[tuple[int, int, str]], now_ns: int) -> None:
        """Without the shim: the job's large anonymous mappings are its objects."""
        seen = set()
        for start, end, name in regions:
            key = f"v{start:x}"
            seen.add(key)
            obj = self.objects.get(key)
            if obj is None or obj.size != end - start:
                tier = obj.tier if obj is not None else None
                self.objects[key] = LiveObject(key, start, end - start, name, now_ns, tier=tier)
                self.site_allocs[name] = self.site_allocs.get(name, 0) + 1
                self.changed = True
        for key in [k for k in self.objects if k.startswith("v") and k not in seen]:
            del self.objects[key]
            self.freed += 1
            self.changed = True
        if self.t0_ns is None:
            self.t0_ns = now_ns

    def live_bytes(self) -> int:
        return sum(o.size for o in self.objects.values())

    # -- features --------------------------------------------------------------------
    def features(self, now_ns: int) -> tuple[list[LiveObject], Any]:
        """Objects and their feature table (columns of ``placement.features.FEATURES``)."""
        import pandas as pd

        from placer.placement.features import density_trend  # the trained features' formula

        objs = list(self.objects.values())
        t0 = self.t0_ns if self.t0_ns is not None else now_ns
        span = float(max(now_ns - t0, 1))
        footprint = float(sum(o.size for o in objs)) or 1.0
        max_interval = max((s[0] for o in objs for s in o.samples), default=0)
        min_interval = min((s[0] for o in objs for s in o.samples), default=0)
        width = max(max_interval - min_interval, 1)
        rows = []
        for o in objs:
            pages = max(o.size / PAGE, 1.0)
            dens = [(i, t / s) for i, s, t, _ in o.samples if s > 0]
            touched = sum(t for _, _, t, _ in o.samples)
            written = sum(w for _, _, _, w in o.samples)
            active = [d for _, d in dens if d > 0]
            access_est = sum(d for _, d in dens) * pages
            mem_n = sum(m[0] for m in o.mem)
            rows.append(
                {
                    "density_mean": (sum(d for _, d in dens) / len(dens)) if dens else math.nan,
                    "density_peak": max((d for _, d in dens), default=math.nan),
                    "density_trend": density_trend(
                        [((i - min_interval) / width, d) for i, d in dens]
                    )
                    if dens
                    else math.nan,
                    "active_share": (len(active) / len(dens)) if dens else math.nan,
                    "write_share": (written / touched) if touched else math.nan,
                    "access_est": access_est,
                    "log_size": math.log2(max(o.size, 1)),
                    "size_share": o.size / footprint,
                    "chunk_position": 0.0,
                    "lifetime_share": min(max((now_ns - o.alloc_ns) / span, 0.0), 1.0),
                    "alloc_time_share": min(max((o.alloc_ns - t0) / span, 0.0), 1.0),
                    "site_allocs": math.log2(1 + self.site_allocs.get(o.site, 1)),
                    "fault_density": 0.0,
                    # perf mem: as run_features (shares and density filled in below)
                    "miss_est": float(sum(m[1] for m in o.mem)) if mem_n else math.nan,
                    # run_features divides the load latency sum by all samples: same here
                    "mem_latency": (sum(m[2] for m in o.mem) / mem_n) if mem_n else math.nan,
                    "tlb_miss_share": (sum(m[4] for m in o.mem) / mem_n) if mem_n else math.nan,
                    "size_bytes": o.size,
                }
            )
        df = pd.DataFrame(rows)
        if len(df):
            total = df["access_est"].sum()
            df["access_share"] = df["access_est"] / total if total > 0 else 0.0
            misses = df["miss_est"].sum(min_count=1)
            has_mem = bool(df["miss_est"].notna().any()) and misses > 0
            df["llc_miss_share"] = df["miss_est"] / misses if has_mem else math.nan
            df["llc_miss_density"] = (
                df["miss_est"] / (df["size_bytes"] / 2**20) if has_mem else math.nan
            )
        return objs, df

    # -- ranking ---------------------------------------------------------------------
    def rank(self, model: Any, budget: str, model_version: str, now_ns: int) -> list[Decision]:
        """Score every live object, choose the DRAM set, return the tier changes."""
        import numpy as np  # lazy: heavy

        self.changed = False
        objs, table = self.features(now_ns)
        if not objs:
            return []
        scores = np.asarray(model.rank_scores(table), dtype=float)
        penalty = np.asarray(model.predict_penalty(table), dtype=float)
        weights = np.asarray([o.size for o in objs], dtype=np.int64)
        total = int(weights.sum())
        try:
            capacity, _fraction = parse_budget(budget, total)
        except InvalidInputError:
            capacity = total  # a byte budget above the footprint: everything fits
        # knapsack takes only items of positive value; rank order breaks ties among zeros
        order = np.argsort(-scores, kind="stable")
        values = np.maximum(penalty, 0.0) + 1e-12 * (len(objs) - np.argsort(order))
        dram = knapsack(values, weights, capacity)
        ranks = np.empty(len(objs), dtype=int)
        ranks[order] = np.arange(1, len(objs) + 1)
        out = []
        for i, o in enumerate(objs):
            o.score, o.penalty = float(scores[i]), float(penalty[i])
            tier = "dram" if dram[i] else "slow"
            if tier == o.tier:
                continue
            dens = table["density_mean"].iat[i]
            signal = "no access samples" if math.isnan(dens) else f"sampled density {dens:.2f}"
            where = "fits" if dram[i] else "falls outside"
            reason = (
                f"rank {ranks[i]} of {len(objs)} by {model_version}; predicted penalty "
                f"{100 * penalty[i]:.3f}% in the slow tier ({signal}); {where} the DRAM "
                f"budget {budget} of {total} live bytes"
            )
            out.append(Decision(o, tier, o.tier, int(ranks[i]), reason))
            o.tier = tier
        return out


_MAPS = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ (\d+)\s*(.*)$")


def anonymous_regions(pid: int, min_bytes: int = VMA_MIN_BYTES) -> list[tuple[int, int, str]]:
    """Writable private anonymous mappings (and the heap) of ``pid`` of at least ``min_bytes``."""
    try:
        text = open(f"/proc/{pid}/maps").read()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        m = _MAPS.match(line)
        if not m:
            continue
        start, end, perms, inode, name = int(m[1], 16), int(m[2], 16), m[3], m[4], m[5]
        if perms[1] != "w" or perms[3] != "p" or inode != "0":
            continue
        if name and name != "[heap]":
            continue
        if end - start >= min_bytes:
            out.append((start, end, "heap" if name else "anon"))
    return out


# ------------------------------------------------------------------------- pipelines
def parse_knob_space(doc: Any) -> dict[str, dict[str, Any]]:
    """``{"knob": {"low": 1, "high": 8} | {"choices": [...]}}`` checked; one-line errors."""
    if not isinstance(doc, dict) or not doc:
        raise InvalidInputError("knob space must be a non-empty object of knob definitions")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in doc.items():
        if not isinstance(name, str) or not isinstance(spec, dict):
            raise InvalidInputError(f"knob {name!r}: a definition is an object")
        if "choices" in spec:
            ch = spec["choices"]
            if (
                not isinstance(ch, list)
                or not ch
                or not all(c is None or isinstance(c, str | int | float | bool) for c in ch)
            ):
                raise InvalidInputError(f"knob {name!r}: choices must be a list of scalars")
            out[name] = {"choices": list(ch)}
        else:
            lo, hi = spec.get("low"), spec.get("high")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)) or lo > hi:  # type: ignore[operator]
                raise InvalidInputError(
                    f"knob {name!r}: low and high must be integers, low <= high"
                )
            out[name] = {"low": lo, "high": hi}
    return out


#: Fields a reported stage needs for the analysis (those of ``StageStats``).
STAGE_FIELDS = (
    "name",
    "elements_in",
    "elements_out",
    "wall_seconds",
    "cpu_seconds",
    "bytes_out",
    "wait_seconds",
    "queue_occupancy",
    "parallelism",
)


@dataclass
class FirstTrial:
    """What the first trial of a job's study runs, and why."""

    knobs: dict[str, Any]
    source: str  # analysis | current
    reason: str
    analysis: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"knobs": self.knobs, "source": self.source, "reason": self.reason}


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def analyze_reported(
    space: dict[str, dict[str, Any]],
    knobs: dict[str, Any],
    stages: list[Any],
    batches: int,
    samples_per_second: float,
    *,
    shape: dict[str, Any] | None = None,
    pid: int | None = None,
) -> FirstTrial:
    """The first trial of a pipeline job: the analysis's config when the stats suffice.

    The Plumber-style analysis of :mod:`tuners.analysis` runs on the stage stats the job
    reported with its first window (fields of ``StageStats``), on a shape of the pipeline
    the daemon builds from them: the stages in the order reported, each stage's
    parallelism knob ``parallelism.<stage>`` when the knob space has it (the analysis's
    own convention), the knobs of the space. ``shape`` (optional, declared at attach:
    ``engine``, ``batch_size``, ``dataset_samples`` and per stage ``kind``,
    ``sequential``, ``random``, ``parallelism_knob``) overrides what is inferred. The
    budget is the cores the job may run on and the memory available to it. When the
    stats do not suffice the first trial is the job's current config and ``reason`` says
    why.
    """
    current = {k: knobs.get(k) for k in space}

    def fallback(why: str) -> FirstTrial:
        return FirstTrial(current, "current", f"first trial is the job's own config: {why}")

    if not stages:
        return fallback("the job reported no stage stats, the analysis needs them")
    if not isinstance(batches, int) or batches <= 0:
        return fallback("the report has no batch count, the analysis needs one")
    docs: list[dict[str, Any]] = []
    for st in stages:
        if not isinstance(st, dict):
            return fallback("a reported stage is not an object")
        lacking = [f for f in STAGE_FIELDS if f not in st]
        if lacking:
            return fallback(
                f"stage {st.get('name')!r} lacks {', '.join(lacking)} (the analysis needs "
                f"every field of StageStats)"
            )
        docs.append(st)
    try:
        return _analysis_trial(space, current, docs, batches, samples_per_second, shape, pid)
    except (InvalidInputError, TypeError, ValueError, KeyError) as exc:
        return fallback(f"the analysis of the reported stats failed: {exc}")


def _analysis_trial(
    space: dict[str, dict[str, Any]],
    current: dict[str, Any],
    docs: list[dict[str, Any]],
    batches: int,
    sps: float,
    shape: dict[str, Any] | None,
    pid: int | None,
) -> FirstTrial:
    shape = shape or {}
    declared = {str(d.get("name")): d for d in shape.get("stages") or [] if isinstance(d, dict)}
    stats = []
    infos = []
    for d in docs:
        name = str(d["name"])
        stats.append(
            StageStats(
                name=name,
                elements_in=int(d["elements_in"]),
                elements_out=int(d["elements_out"]),
                wall_seconds=float(d["wall_seconds"]),
                cpu_seconds=float(d["cpu_seconds"]),
                bytes_out=int(d["bytes_out"]),
                wait_seconds=float(d["wait_seconds"]),
                queue_occupancy=float(d["queue_occupancy"]),
                parallelism=int(d["parallelism"]),
            )
        )
        dec = declared.get(name, {})
        knob = dec.get("parallelism_knob")
        if knob is None and f"parallelism.{name}" in space:
            knob = f"parallelism.{name}"
        infos.append(
            StageInfo(
                name=name,
                kind=str(dec.get("kind", "map")),
                sequential=bool(dec.get("sequential", False)),
                random=bool(dec.get("random", False)),
                parallelism_knob=knob if isinstance(knob, str) else None,
            )
        )
    if len({s.name for s in stats}) != len(stats):
        raise InvalidInputError("stage names repeat")
    if not any(s.wall_seconds > 0 or s.cpu_seconds > 0 for s in stats):
        raise InvalidInputError("no stage reported any time spent")
    defknobs: dict[str, Any] = {
        k: ChoiceKnob(tuple(v["choices"])) if "choices" in v else IntKnob(v["low"], v["high"])
        for k, v in space.items()
    }
    batch_size = shape.get("batch_size")
    known_batch = isinstance(batch_size, int) and batch_size > 0
    spb = float(batch_size) if known_batch else 1.0  # type: ignore[arg-type]
    dataset = shape.get("dataset_samples")
    defn = PipelineDef(
        name="daemon-job",
        engine=str(shape.get("engine", "unknown")),
        stages=infos,
        knobs=defknobs,
        build=_no_build,
        batch_size=int(spb),
        naive_config=dict(current),
        dataset_samples=int(dataset) if isinstance(dataset, int) else int(batches * spb),
    )
    cores = float(os.cpu_count() or 1)
    if pid is not None:
        try:
            cores = float(len(os.sched_getaffinity(pid)))
        except OSError:
            pass
    avail = _meminfo("MemAvailable")
    rss = _rss(pid) if pid is not None else 0
    batches_per_s = sps / spb if spb else 0.0
    m = Measurement(
        config=dict(current),
        samples_per_second=sps,
        batches=batches,
        samples=int(batches * spb) if known_batch else 0,
        wall_seconds=batches / batches_per_s if batches_per_s > 0 else 0.0,
        stages=stats,
        host=HostFacts(cores=int(cores), free_memory_bytes=avail),
        peak_rss_bytes=rss,
    )
    a = analyze(defn, m, budget_cores=cores, budget_memory_bytes=avail + rss)
    config = config_from_analysis(defn, a)
    first = {k: config.get(k, current.get(k)) for k in space}
    unit = "samples/s" if known_batch else "batches/s"
    scale = 1.0 if known_batch else 1.0 / spb
    reason = (
        f"Plumber-style analysis of the reported stage stats over {cores:g} cores: "
        f"bottleneck {a.bottleneck}, LP bound "
        f"{_fmt(a.upper_bound_no_cache * scale)} {unit} (binding: {a.lp_bottleneck}), "
        f"measured {_fmt(sps * scale)} {unit}; first trial "
        + ", ".join(f"{k}={v}" for k, v in first.items())
    )
    return FirstTrial(first, "analysis", reason, a.to_dict())


def _no_build(_config: Any, _probes: Any) -> Any:
    raise InvalidInputError("the daemon analyzes a job's pipeline; it never builds it")


def _meminfo(key: str) -> int:
    try:
        for line in open("/proc/meminfo"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _rss(pid: int) -> int:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


class PipelineTuner:
    """Optuna ask-and-tell over a job's knobs, in the store's database or in memory.

    ``storage`` (Optuna's RDB storage on the store, ``tuners.tuning.optuna_storage``) and
    ``study_name``: the study is created, or loaded when it exists (a restarted daemon
    resumes it: its finished trials count, its open trial is the one the job may be
    running). Without storage the study is in memory.

    ``first``: the first trial's knobs (the analysis's answer) and why; default: the
    configuration the job runs now. When the first trial is not the job's current config,
    the first report (which measured the current config) is added to the study as a
    finished trial (user attr ``origin: baseline``) so the study knows where the job
    started and never settles on something worse.
    """

    def __init__(
        self,
        space: dict[str, dict[str, Any]],
        current: dict[str, Any],
        trials: int,
        seed: int = 0,
        *,
        storage: Any = None,
        study_name: str | None = None,
        first: FirstTrial | None = None,
    ) -> None:
        import optuna  # lazy: heavy
        from optuna.trial import TrialState  # lazy: heavy

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.space = space
        self.max_trials = max(1, trials)
        self.study = optuna.create_study(
            storage=storage,
            study_name=study_name,
            load_if_exists=True,
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=3, multivariate=True),
        )
        self.trial: tuple[int, dict[str, Any]] | None = None  # (number, params) asked
        self.told = 0
        self.best: tuple[float, dict[str, Any]] | None = None
        self.resumed = False
        existing = self.study.get_trials(deepcopy=False)
        attrs = self.study.user_attrs
        if existing or "first_trial" in attrs:
            self.resumed = True
            self.first = FirstTrial(
                **attrs.get("first_trial", {"knobs": {}, "source": "?", "reason": "resumed"})
            )
            self.baseline_due = False
            running = [t for t in existing if t.state == TrialState.RUNNING]
            for t in running[:-1]:  # asked by an earlier daemon and never told
                self.study.tell(t.number, state=TrialState.FAIL)
            if running:
                self.trial = (running[-1].number, dict(running[-1].params))
            for t in existing:
                if t.state == TrialState.COMPLETE and t.value is not None:
                    self.told += 1
                    if self.best is None or t.value > self.best[0]:
                        self.best = (float(t.value), dict(t.params))
            return
        start = {k: v for k, v in current.items() if k in space}
        self.first = first or FirstTrial(start, "current", "the job's own config")
        self.baseline_due = self.first.knobs != start and bool(start)
        if self.first.knobs:
            self.study.enqueue_trial(self.first.knobs, skip_if_exists=True)
        self.study.set_user_attr("first_trial", self.first.to_dict())
        if self.first.analysis is not None:
            self.study.set_user_attr("analysis", _json_safe(self.first.analysis))

    def settled(self) -> bool:
        return self.told >= self.max_trials and self.best is not None

    def _dists(self) -> dict[str, Any]:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        return {
            k: CategoricalDistribution(v["choices"])
            if "choices" in v
            else IntDistribution(v["low"], v["high"])
            for k, v in self.space.items()
        }

    def _ask(self) -> dict[str, Any]:
        t = self.study.ask(self._dists())
        self.trial = (t.number, dict(t.params))
        return dict(t.params)

    def _add_baseline(self, knobs: dict[str, Any], value: float) -> int | None:
        """The job's own config, measured before the first trial ran, as a finished trial."""
        import optuna  # lazy: heavy

        dists = self._dists()
        params = {k: knobs.get(k) for k in dists}
        try:
            trial = optuna.trial.create_trial(
                params=params,
                distributions=dists,
                value=value,
                user_attrs={"origin": "baseline"},
            )
            self.study.add_trial(trial)
        except ValueError:  # the job's knobs are outside its own space: not a trial
            return None
        self.told += 1
        if self.best is None or value > self.best[0]:
            self.best = (value, params)
        return len(self.study.get_trials(deepcopy=False)) - 1

    def step(
        self, knobs_in_force: dict[str, Any], samples_per_second: float
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Tell what the knobs in force achieved; returns (next knobs, trial record)."""
        record: dict[str, Any] = {"samples_per_second": samples_per_second}
        if self.settled():
            assert self.best is not None
            record.update(knobs=dict(self.best[1]), settled=True)
            return dict(self.best[1]), record
        if self.trial is None:
            self._ask()
        assert self.trial is not None
        number, params = self.trial
        in_force = {k: knobs_in_force.get(k) for k in params}
        if in_force == params:
            self.study.tell(number, samples_per_second)
            record.update(trial=number, knobs=params)
            if number == 0 or (self.first.knobs and params == self.first.knobs):
                record["origin"] = self.first.source
            self.told += 1
            self.baseline_due = False
            if self.best is None or samples_per_second > self.best[0]:
                self.best = (samples_per_second, params)
            self.trial = None
        elif self.baseline_due:  # first report: the job still runs its own config
            self.baseline_due = False
            n = self._add_baseline(knobs_in_force, samples_per_second)
            if n is None:
                record.update(trial=number, knobs=params, waiting=True)
                return params, record
            record.update(
                trial=n, knobs={k: knobs_in_force.get(k) for k in self.space}, origin="baseline"
            )
            if self.settled():
                assert self.best is not None
                record["settled"] = True
                return dict(self.best[1]), record
            return params, record
        else:  # the job has not applied the trial's knobs yet: keep waiting for it
            record.update(trial=number, knobs=params, waiting=True)
            return params, record
        if self.settled():
            assert self.best is not None
            record["settled"] = True
            return dict(self.best[1]), record
        return self._ask(), record


def _json_safe(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=str))
