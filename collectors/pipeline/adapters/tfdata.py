"""tf.data engine: native TF ops per stage, ``num_parallel_calls``, ``prefetch``, ``cache``.

tf.data runs stage functions as graph ops inside its own C++ threads, so a Python probe
cannot time each element without changing what is measured (``tf.py_function`` would put
the GIL back into the pipeline). Instead, with probes on, :class:`TfPipeline` *calibrates*
each stage once per build: it runs the pipeline's prefix up to each stage on
``calibration_elements`` elements, single-threaded, and takes the difference in wall and
process CPU time between consecutive prefixes as that stage's cost per element. During
the run it counts output batches and charges every stage its calibrated cost per element
it processed. Counts are exact; per-stage times are calibrated, not traced — that is
stated in docs/pipelines.md. ``AUTOTUNE`` variants leave parallelism and prefetch to tf.data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from placer.collectors.pipeline.engine import Engine
from placer.collectors.pipeline.probe import Probes
from placer.collectors.pipeline.spec import BATCH_STAGE
from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, Knob, PipelineDef, StageInfo
from placer.errors import InvalidInputError


@dataclass(frozen=True)
class TfStage:
    """One tf.data map stage: ``fn`` takes and returns tensors (graph-compatible)."""

    name: str
    fn: Callable[..., Any]
    random: bool = False
    max_parallelism: int = 8


@dataclass
class TfSpec:
    """A tf.data pipeline: ``items()`` (paths, ...) → map stages → batch (→ prefetch)."""

    name: str
    items: Callable[[], list[Any]]
    stages: list[TfStage]  # the first is the source (reads one item)
    batch_size: int
    samples_per_element: int = 1
    description: str = ""
    source: str | None = None
    materialized_bytes: dict[str, int] | None = None
    finalize: Callable[[Any], Any] | None = None  # after batch, e.g. unbatching chunks
    calibration_elements: int = 64


def _tf() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # lazy: heavy

    return tf


class TfDataEngine(Engine):
    """tf.data: native ops in TF's own C++ threads (no GIL between stages).

    Its pipelines are built from a :class:`TfSpec` (:func:`tf_pipeline_def`): stage
    functions must be graph functions, so a ``PipelineSpec`` does not fit.
    """

    name = "tfdata"

    def preload(self) -> None:
        """Import TensorFlow (no runtime started) so forked measurements skip the import."""
        _tf()


def tf_available() -> str | None:
    """None if TensorFlow imports, else the reason it does not."""
    try:
        _tf()
    except Exception as exc:  # noqa: BLE001 - any import failure means no engine
        return f"TensorFlow is not importable: {type(exc).__name__}: {exc}"
    return None


class TfPipeline:
    """Re-iterable tf.data pipeline (the dataset object, and so its cache, lives on)."""

    def __init__(self, spec: TfSpec, config: Config, probes: Probes | None, autotune: bool):
        tf = _tf()
        self.spec = spec
        self.probes = probes
        self.autotune = autotune
        names = [s.name for s in spec.stages]
        cache = config.get("cache")
        ds = tf.data.Dataset.from_tensor_slices(spec.items())
        for s in spec.stages:
            par = tf.data.AUTOTUNE if autotune else int(config.get(f"parallelism.{s.name}", 1))
            if par == 1:
                ds = ds.map(s.fn)
            else:
                ds = ds.map(s.fn, num_parallel_calls=par, deterministic=True)
            if cache == s.name:
                ds = ds.cache()
        ds = ds.batch(spec.batch_size)
        if cache == BATCH_STAGE:
            ds = ds.cache()
        if spec.finalize is not None:
            ds = ds.map(spec.finalize)
        depth = tf.data.AUTOTUNE if autotune else int(config.get("prefetch", 0))
        if depth != 0:
            ds = ds.prefetch(depth)
        self.dataset = ds
        self.cache_pos = names.index(cache) if cache in names else -1
        self.cost: dict[str, tuple[float, float]] = {}
        if probes is not None:
            for name in [*names, BATCH_STAGE]:
                probes.stage(name)
            self.cost = self._calibrate()
        self.epochs = 0

    def _calibrate(self) -> dict[str, tuple[float, float]]:
        """Per-element (wall, cpu) seconds of each stage, from prefix differences.

        Each prefix is iterated batched, as the pipeline runs (a batch crosses into
        Python, not every element: per element, that crossing cost about 74 us of CPU
        here, more than some stages), and the cost of iterating the source alone is
        taken off the first stage. A stage whose outputs cannot be batched (shapes that
        differ) is calibrated element by element, with the source's per-element
        iteration cost taken off the same way.
        """
        tf = _tf()
        n = min(self.spec.calibration_elements, len(self.spec.items()))
        base = tf.data.Dataset.from_tensor_slices(self.spec.items()[:n])
        opts = tf.data.Options()
        opts.threading.private_threadpool_size = 1
        batch = max(int(self.spec.batch_size), 1)

        def timed(ds: Any) -> tuple[float, float]:
            ds = ds.with_options(opts)
            for _ in ds.take(2):  # build and warm the graph
                pass
            wall = cpu = float("inf")
            for _ in range(2):  # the faster of two passes: less noise from neighbours
                w0, c0 = time.perf_counter(), time.process_time()
                for _ in ds:
                    pass
                wall = min(wall, (time.perf_counter() - w0) / n)
                cpu = min(cpu, (time.process_time() - c0) / n)
            return wall, cpu

        iterate = {"batched": timed(base.batch(batch)), "element": timed(base)}
        cost: dict[str, tuple[float, float]] = {}
        prev = (0.0, 0.0)  # the previous prefix's cost, iteration taken off
        ds = base
        for s in self.spec.stages:
            ds = ds.map(s.fn)
            try:
                mode, (wall, cpu) = "batched", timed(ds.batch(batch))
            except (tf.errors.InvalidArgumentError, ValueError, TypeError):
                mode, (wall, cpu) = "element", timed(ds)
            now = (wall - iterate[mode][0], cpu - iterate[mode][1])
            cost[s.name] = (max(0.0, now[0] - prev[0]), max(0.0, now[1] - prev[1]))
            prev = now
        return cost

    def _charge(self, elements: int) -> None:
        """Credit each stage with the elements it processed for one output batch."""
        assert self.probes is not None
        cached = self.epochs > 0 and self.cache_pos >= 0
        for i, s in enumerate(self.spec.stages):
            if cached and i <= self.cache_pos:
                continue  # served from tf.data's cache: the stage did not run
            wall, cpu = self.cost[s.name]
            self.probes.stage(s.name).record(
                n_in=elements,
                n_out=elements,
                wall_ns=int(wall * elements * 1e9),
                cpu_ns=int(cpu * elements * 1e9),
            )
        self.probes.stage(BATCH_STAGE).record(n_in=elements, n_out=1)

    def __iter__(self) -> Iterator[Any]:
        for batch in self.dataset:
            if self.probes is not None:
                self._charge(_leading(batch) // max(1, self.spec.samples_per_element))
            yield batch
        self.epochs += 1


def _leading(batch: Any) -> int:
    if isinstance(batch, dict):
        n = batch.get("num_samples")
        if n is not None:
            return int(n)
        batch = next(iter(batch.values()))
    if isinstance(batch, tuple | list):
        batch = batch[0]
    return int(batch.shape[0])


def tf_knobs(spec: TfSpec) -> dict[str, Knob]:
    out: dict[str, Knob] = {
        f"parallelism.{s.name}": IntKnob(1, s.max_parallelism) for s in spec.stages
    }
    out["prefetch"] = IntKnob(0, 16)
    cacheable: list[str] = []
    for s in spec.stages:
        if s.random:
            break
        cacheable.append(s.name)
    out["cache"] = ChoiceKnob((None, *cacheable))
    return out


def tf_pipeline_def(spec: TfSpec, *, autotune: bool = False) -> PipelineDef:
    """``<name>-tfdata`` (knobs searched) or ``<name>-tfdata-autotune`` (no knobs)."""
    knobs = {} if autotune else tf_knobs(spec)
    naive: Config = (
        {}
        if autotune
        else {**{f"parallelism.{s.name}": 1 for s in spec.stages}, "prefetch": 0, "cache": None}
    )

    def build(config: Config, probes: Any) -> TfPipeline:
        unknown = sorted(set(config) - set(knobs))
        if unknown:
            raise InvalidInputError(f"{spec.name} (tfdata): unknown config key(s) {unknown}")
        for key, knob in knobs.items():
            value = config.get(key, naive.get(key))
            if isinstance(knob, IntKnob) and (not isinstance(value, int) or value < knob.low):
                raise InvalidInputError(f"{spec.name}: {key} must be an integer >= {knob.low}")
            if isinstance(knob, ChoiceKnob) and value not in knob.choices:
                raise InvalidInputError(f"{spec.name}: {key} must be one of {list(knob.choices)}")
        return TfPipeline(spec, {**naive, **config}, probes, autotune)

    stages = [
        StageInfo(
            name=s.name,
            kind="source" if i == 0 else "map",
            random=s.random,
            parallelism_knob=None if autotune else f"parallelism.{s.name}",
        )
        for i, s in enumerate(spec.stages)
    ]
    stages.append(StageInfo(name=BATCH_STAGE, kind="batch", sequential=True))
    return PipelineDef(
        name=f"{spec.name}-{TfDataEngine.name}" + ("-autotune" if autotune else ""),
        engine=TfDataEngine.name,
        stages=stages,
        knobs=knobs,
        build=build,
        batch_size=spec.batch_size * spec.samples_per_element,
        naive_config=naive,
        dataset_samples=len(spec.items()) * spec.samples_per_element,
        materialized_bytes=dict(spec.materialized_bytes or {}),
        description=spec.description + (" (tf.data AUTOTUNE)" if autotune else ""),
        source=spec.source,
    )
