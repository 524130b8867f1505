"""What the daemon decides: tiers for live objects, and the next knobs of a pipeline.

Objects: :class:`ObjectTable` keeps the live objects of one job (from the shim log, or
from ``/proc/PID/maps`` for a process without the shim) with their recent page-poison
samples, turns them into the observations :func:`placer.placement.features.features` takes
(the one feature function, also behind ``run_features`` for stored runs), scores them
with the current placement model (the newest trained one, else the shipped default) and
picks the DRAM set with the planner's knapsack on the predicted penalty under the job's
DRAM budget.

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

from placer.contracts.pipeline import (
    HostFacts,
    Measurement,
    PipelineDef,
    StageInfo,
    StageStats,
    from_wire,
    to_wire,
)
from placer.errors import InvalidInputError
from placer.placement.features import (
    Interval,
    MemCounts,
    ObjectObservation,
    RunHistory,
    RunObservation,
    density_mean,
)
from placer.placement.features import features as feature_table
from placer.placement.model import PlacementModel
from placer.placement.planner import knapsack, parse_budget
from placer.tuners.analysis import analyze
from placer.tuners.configs import config_from_analysis
from placer.tuners.space import distributions
from placer.tuners.study import name_objective, record_best

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
    seq: int = 0  # allocation number: distinct allocations per site are a feature

    def observation(self) -> ObjectObservation:
        """What the daemon has seen of this object, as the feature function takes it.

        No fault counts (the daemon records no first-touch faults) and no chunks (it moves
        whole objects): the feature function turns that missing evidence into its values.
        """
        return ObjectObservation(
            site=self.site,
            alloc_seq=self.seq,
            size=self.size,
            alloc_ns=self.alloc_ns,
            intervals=[Interval(i, s, t, w) for i, s, t, w in self.samples],
            mem=[MemCounts(n, llc, lat, tlb) for n, llc, lat, _loads, tlb in self.mem],
        )

    def describe(self) -> dict[str, Any]:
        dens = density_mean(Interval(i, s, t, w) for i, s, t, w in self.samples)
        return {
            "object": self.key,
            "address": hex(self.address),
            "size_bytes": self.size,
            "site": self.site,
            "tier": self.tier,
            "score": None if self.score is None else round(self.score, 6),
            "predicted_penalty": None if self.penalty is None else round(self.penalty, 8),
            "density_mean": None if math.isnan(dens) else round(dens, 4),
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
    """Live objects of one job, indexed by allocation seq (shim) or mapping start.

    Freed objects fold into :attr:`history` (bounded: counters per site), so run-wide
    features (shares, footprint, allocations per site) cover the run so far, as in training.
    """

    def __init__(self) -> None:
        self.objects: dict[str, LiveObject] = {}
        self.by_seq: dict[int, LiveObject] = {}
        self.history = RunHistory()
        self.mappings = 0  # mappings seen: their allocation numbers
        #: The program's start (the shim log header's clock), once known: run time counts
        #: from there, as in a stored run; unknown, it counts from the first allocation.
        self.program_start_ns: int | None = None
        self.changed = False  # something new since the last ranking
        self.freed = 0

    # -- input -----------------------------------------------------------------------
    def add_alloc(self, seq: int, address: int, size: int, site: int, time_ns: int) -> None:
        key = f"s{seq}"
        obj = LiveObject(key, address, size, f"{site:016x}", time_ns, seq=seq)
        self.objects[key] = obj
        self.by_seq[seq] = obj
        self.changed = True

    def free(self, seq: int) -> None:
        obj = self.by_seq.pop(seq, None)
        if obj is not None:
            self.objects.pop(obj.key, None)
            self.history.fold(obj.observation())
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
                if obj is not None:  # resized: a new allocation in its place
                    self.history.fold(obj.observation())
                self.mappings += 1
                self.objects[key] = LiveObject(
                    key, start, end - start, name, now_ns, tier=tier, seq=self.mappings
                )
                self.changed = True
        for key in [k for k in self.objects if k.startswith("v") and k not in seen]:
            self.history.fold(self.objects.pop(key).observation())
            self.freed += 1
            self.changed = True

    def live_bytes(self) -> int:
        return sum(o.size for o in self.objects.values())

    # -- features --------------------------------------------------------------------
    def features(self, now_ns: int) -> tuple[list[LiveObject], Any]:
        """Objects and their feature table (columns of ``placement.features.FEATURES``).

        The run is observed until ``now_ns``: objects still live have lived until now.
        """
        objs = list(self.objects.values())
        start = self.program_start_ns
        run = RunObservation(
            [o.observation() for o in objs],
            wall_ns=float(now_ns - start) if start is not None else 0.0,
            until_ns=now_ns,
            history=self.history,
        )
        return objs, feature_table(run)

    # -- ranking ---------------------------------------------------------------------
    def rank(
        self, model: PlacementModel, budget: str, model_version: str, now_ns: int
    ) -> list[Decision]:
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
    """``{"knob": {"low": 1, "high": 8[, "log": true]} | {"choices": [...]}}`` checked;
    one-line errors. Normalized through the knob types so nothing (``log``) is lost."""
    return to_wire(from_wire(doc))


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

    The Plumber-style analysis of :mod:`placer.tuners.analysis` runs on the stage stats the job
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
    defknobs: dict[str, Any] = dict(from_wire(space))  # the wire form, log scale included
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

    ``storage`` (Optuna's RDB storage on the store, ``placer.tuners.study.optuna_storage``) and
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
        name_objective(self.study)
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
        return distributions(from_wire(self.space))

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
        number = len(self.study.get_trials(deepcopy=False)) - 1
        self._improve(number, value, params)
        return number

    def _improve(self, number: int, value: float, params: dict[str, Any]) -> None:
        """Keep ``params`` as the best if ``value`` beats it, on the study too."""
        if self.best is None or value > self.best[0]:
            self.best = (value, params)
            record_best(self.study, number, params, value)

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
            self._improve(number, samples_per_second, params)
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
