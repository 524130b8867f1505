"""``placer experiment`` end to end: profile (native + deep), then label, one program or a suite.

Kept apart from the CLI so tests and scripts can drive experiments directly.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from placer.collectors.hostmodel import binary_runner, measure_host_model
from placer.collectors.profile.session import ProfileRequest, run_profile
from placer.contracts.examples import example_bin_dir
from placer.contracts.host import this_host
from placer.emulator.host import from_model, stored
from placer.emulator.model import HostDram
from placer.errors import ExternalToolError, PlacerError
from placer.experiments.deep import dhat_pass
from placer.experiments.runner import (
    LABEL_THREADS,
    THREAD_POOL_VARS,
    ExperimentRequest,
    Mode,
    emulate_labels,
    measured_labels,
    plain_baseline,
    thread_env,
)
from placer.store import Store
from placer.store.repository.hosts import current_host_model, save_host_model
from placer.store.repository.runs import find_run, require_run


@contextlib.contextmanager
def quiet_fds(log_path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (the profiled program's and the profiler's chatter) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def pinned_threads(threads: int | None) -> Iterator[None]:
    """Size the program's thread pools (OpenMP, BLAS, numexpr) to ``threads`` while it is
    profiled and timed for emulated labels (None: leave the environment alone).

    Emulated labels are priced on the program's CPU time; with one thread that time is
    the same whether or not other processes keep the host's cores busy (docs/emulator.md,
    "Time base"), while several threads contend with each other for cores and memory.
    """
    if threads is None:
        yield
        return
    saved = {k: os.environ.get(k) for k in THREAD_POOL_VARS}
    os.environ.update(thread_env(threads))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


#: Page-poison pages per object per interval in a labeling profile: four times the shim's
#: default. With 4, an init pass sweeping a quarter of a 64 MiB array per interval left 1 in
#: 3 of its intervals with no touched sample, so two profiles of randupdate counted 13 vs 9
#: active intervals and priced its random share 0.49 vs 0.82 (docs/emulator.md). The
#: sampler's cost cap is off in labeling profiles: it counts the handlers' wall time, which
#: load stretches, so it would skip more intervals on a busy host.
LABEL_SAMPLE_PAGES = 16


def profile_native(store: Any, command: list[str], app: str, *, chunk: int = 0) -> int:
    """Profile ``command`` natively (shim, perf where it works); returns the run id.

    ``chunk`` > 0 splits allocations larger than ``chunk`` bytes into chunks of that size
    (``placer profile --chunk``); the deep pass joins per site and the emulator shares a
    site's traffic among its chunks, so the rest of an experiment is unchanged.
    """
    native, code, _ = run_profile(
        store,
        ProfileRequest(
            command=list(command),
            name=app,
            chunk=chunk,
            sample_pages=LABEL_SAMPLE_PAGES,
            sample_budget_pct=0.0,
        ),
    )
    if code != 0:
        raise PlacerError(
            f"{app}: the program exited with {code} while being profiled (run {native})"
        )
    return native


def deep_step(store: Any, run_id: int, command: list[str]) -> dict[str, Any] | None:
    """Add DHAT traffic to a native run (not for Python runs, see below)."""
    with store.session() as s:
        python = bool((require_run(s, run_id).inputs or {}).get("python"))
    if python:  # numpy buffers share one C allocation stack: DHAT cannot tell them apart
        return None
    return dhat_pass(store, run_id, list(command))


def profile_pair(
    store: Any, command: list[str], app: str, *, deep: bool = True, chunk: int = 0
) -> tuple[int, dict[str, Any] | None]:
    """Profile ``command`` natively, then (``deep``) add its DHAT traffic to that run."""
    native = profile_native(store, command, app, chunk=chunk)
    return native, deep_step(store, native, command) if deep else None


def pricing_host(store: Store, model_id: int | None = None) -> HostDram:
    """The host model labels are priced on: ``model_id``, else this host's stored one.

    A host labeled for the first time has none yet: it is measured once now (as
    ``placer calibrate`` does), stored, and every later label reuses it.
    """
    with store.session() as s:
        if model_id is not None or current_host_model(s, this_host()) is not None:
            return stored(s, model_id)
    bins = example_bin_dir(build=True)
    if bins is None:
        raise ExternalToolError("no host model stored and no microbenchmarks to measure one")
    print(
        f"placer: no host model for {this_host().hostname} in the store yet: measuring it "
        "once (placer calibrate, about a minute)",
        file=sys.stderr,
        flush=True,
    )
    model = measure_host_model(binary_runner(bins), this_host())
    with store.session() as s:
        row = save_host_model(s, model)
        return from_model(row.id, model)


def run_experiment(
    store: Any,
    req: ExperimentRequest,
    mode: Mode,
    host: HostDram | None,
    *,
    app: str,
    command: list[str] | None = None,
    run_id: int | None = None,
) -> dict[str, Any]:
    """Label one program (profiling it first) or one stored run."""
    if mode.kind == "emulated" and host is None:
        host = pricing_host(store)  # before anything runs: a bad host model stores nothing
    emulated = mode.kind == "emulated"
    threads = (req.threads or LABEL_THREADS) if emulated else None
    runs = None
    if run_id is None:
        assert command
        with pinned_threads(threads):
            run_id, _ = profile_pair(store, command, app, deep=emulated, chunk=req.chunk)
            runs = plain_baseline(command) if emulated else None
    if emulated:
        assert host is not None
        return emulate_labels(
            store, run_id, req, host, baseline_runs=runs, threads=threads if runs else None
        )
    if command is None:
        with store.session() as s:
            run = find_run(s, run_id)
            command = list(run.command) if run else []
    with tempfile.TemporaryDirectory(prefix="placer-measure-") as tmp:
        return measured_labels(store, run_id, req, mode, command, Path(tmp))


def run_suite(
    store: Any,
    req: ExperimentRequest,
    mode: Mode,
    host: HostDram | None,
    workloads: list[Any],
    *,
    on_step: Callable[[str, str], None] | None = None,
    log_path: Path | None = None,
) -> dict[str, Any]:
    """Label every workload; a failing workload is reported and the others go on."""
    done: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    t0 = time.monotonic()
    log_path = log_path or Path(tempfile.gettempdir()) / f"placer-suite-{os.getpid()}.log"
    for w in workloads:
        if on_step:
            on_step(w.app, "start")
        started = time.monotonic()
        try:
            with quiet_fds(log_path):
                summary = run_experiment(store, req, mode, host, app=w.app, command=w.command)
            summary["app"] = w.app
            summary["group"] = w.group
            summary["seconds"] = round(time.monotonic() - started, 2)
            done.append(summary)
            status = "ok"
        except PlacerError as exc:
            failed.append({"app": w.app, "error": str(exc)})
            status = "failed"
        if on_step:
            on_step(w.app, status)
    return {
        "mode": mode.kind,
        "tier": req.tier if mode.kind == "emulated" else f"node{mode.slow_node}",
        "runs_labeled": len(done),
        "failed": failed,
        "elapsed_seconds": round(time.monotonic() - t0, 1),
        "experiments": done,
        "log": str(log_path),
    }
