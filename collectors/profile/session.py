"""``placer profile`` end to end: check the program, run it instrumented, store its profile.

Kept apart from the CLI module so tests and the daemon can drive a profile directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from placer.collectors.profile import ingest, perf, pyrunner
from placer.collectors.profile.elf import read_elf, resolve_command, script_interpreter
from placer.collectors.profile.reduce import reduce_log
from placer.collectors.profile.runner import preload_exec, run_program
from placer.collectors.profile.symbolize import Symbolizer
from placer.collectors.shim.library import shim_path
from placer.config import data_dir
from placer.contracts.units import parse_size as parse_size  # public here too (CLI, tests)
from placer.errors import ExternalToolError, InvalidInputError, PlacerError

_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


@dataclass
class ProfileRequest:
    command: list[str]
    name: str | None = None
    deep: bool = False
    chunk: int = 0
    sample_period_ms: int | None = None
    sample_budget_pct: float | None = None  # the shim's cost cap, % of the program's CPU
    threshold: int | None = None
    perf: bool = True
    stack_depth: int | None = None
    #: page-poison pages per sampled object per interval (None: the shim's 4); the shim's
    #: per-interval cap is raised to 16 objects' worth
    sample_pages: int | None = None


@dataclass
class PreparedCommand:
    argv: list[str]  # what to exec (after wrappers are added)
    binary: str  # the ELF that runs (the interpreter for scripts)
    build_id: str
    python_script: list[str] | None  # [script, args...] or ["-m", mod, args...]
    app_name: str
    notes: list[str] = field(default_factory=list)


def prepare(command: list[str], name: str | None) -> PreparedCommand:
    """Resolve the program, refuse what the shim cannot load, spot Python scripts."""

    if not command:
        raise InvalidInputError("nothing to profile: give a command after --")
    try:
        command[0].encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInputError(
            f"program path {os.fsencode(command[0])!r} is not valid UTF-8 and the store "
            "keeps paths as text; run it through a symlink with a UTF-8 name"
        ) from None
    path = resolve_command(command[0])
    argv = list(command)  # argv[0] as typed: some programs look at it (redis-server)
    info = read_elf(path)
    python_script: list[str] | None = None
    if info is None:
        interp = script_interpreter(path)
        if interp is None:
            raise InvalidInputError(f"{command[0]} is neither an ELF program nor a #! script")
        if os.path.basename(interp[0]) == "env" and len(interp) > 1:
            interp = interp[1:]
        interp_path = resolve_command(interp[0])
        info = read_elf(interp_path)
        if info is None:
            raise InvalidInputError(f"{command[0]}: interpreter {interp[0]} is not an ELF program")
        argv = [interp_path, *interp[1:], command[0], *command[1:]]
        if _PYTHON.match(os.path.basename(interp[0])) and len(interp) == 1:
            python_script = [command[0], *command[1:]]
    elif _PYTHON.match(os.path.basename(command[0])) or _PYTHON.match(os.path.basename(path)):
        rest = command[1:]
        if rest and (rest[0] == "-m" and len(rest) > 1 or not rest[0].startswith("-")):
            python_script = rest
    if info.is_static:
        raise InvalidInputError(
            f"{command[0]} is statically linked (no PT_INTERP): the shim is an "
            f"LD_PRELOAD library and cannot load into it; profile a dynamically linked build"
        )
    if name:
        app = name
    elif python_script:
        app = Path(python_script[1] if python_script[0] == "-m" else python_script[0]).name
    else:
        app = Path(command[0]).name
    return PreparedCommand(
        argv=argv,
        binary=info.path,
        build_id=info.build_id,
        python_script=python_script,
        app_name=app,
    )


def _shim_path() -> str:
    try:
        pass
    except ImportError as exc:
        raise ExternalToolError(f"the allocation shim is not installed ({exc})") from None
    try:
        return str(shim_path())
    except PlacerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a build failure is the user's to see
        raise ExternalToolError(f"cannot build or find the allocation shim: {exc}") from None


def _say(msg: str) -> None:
    print(f"placer: {msg}", file=sys.stderr, flush=True)


def run_profile(store: Any, req: ProfileRequest) -> tuple[int, int, dict[str, Any]]:
    """Profile ``req.command``; returns (run id, exit code for placer, summary)."""

    prep = prepare(req.command, req.name)
    if req.chunk < 0:
        raise InvalidInputError("--chunk must be a positive size")
    if 0 < req.chunk < ingest.MIN_CHUNK_BYTES:
        raise InvalidInputError(
            f"--chunk {req.chunk} is smaller than a page: at least {ingest.MIN_CHUNK_BYTES} "
            "bytes (placement binds whole pages)"
        )
    if req.sample_period_ms is not None and req.sample_period_ms < 0:
        raise InvalidInputError("--sample-period must be >= 0 ms (0 turns sampling off)")
    if req.sample_pages is not None and not 1 <= req.sample_pages <= 64:
        raise InvalidInputError(f"--sample-pages must be 1..64, not {req.sample_pages}")
    budget = req.sample_budget_pct
    if budget is not None and not 0 <= budget <= 100:
        raise InvalidInputError("--sample-budget must be a percentage in [0, 100] (0: no cap)")
    shim = _shim_path()
    valgrind = "valgrind"
    if req.deep:
        found = shutil.which("valgrind")
        if found is None:
            raise ExternalToolError("--deep needs valgrind (Debian: valgrind), not found")
        valgrind = found

    workdir = Path(tempfile.mkdtemp(prefix=ingest.WORKDIR_PREFIX))
    keep = False
    try:
        status = perf.PerfStatus(False, False, "disabled (--no-perf)")
        if req.perf:
            status = perf.probe()
            if not status.faults:
                _say(f"perf unavailable, profiling without page-fault samples: {status.reason}")
        env = dict(os.environ)
        env["PLACER_SHIM_LOG"] = str(workdir / "shim.%p.log")
        if req.threshold is not None:
            env["PLACER_SHIM_THRESHOLD"] = str(req.threshold)
        if req.sample_period_ms is not None:
            env["PLACER_SHIM_SAMPLE_PERIOD_MS"] = str(req.sample_period_ms)
        if budget is not None:
            env["PLACER_SHIM_SAMPLE_BUDGET"] = f"{budget:.3f}"
        if req.stack_depth is not None:
            env["PLACER_SHIM_STACK_DEPTH"] = str(req.stack_depth)
        if req.sample_pages is not None:
            env["PLACER_SHIM_SAMPLE_PAGES"] = str(req.sample_pages)
            env["PLACER_SHIM_SAMPLE_MAX_PAGES"] = str(16 * req.sample_pages)
        preload = shim + (f" {env['LD_PRELOAD']}" if env.get("LD_PRELOAD") else "")

        program = list(prep.argv)
        py_out: Path | None = None
        if prep.python_script is not None:
            py_out = workdir / "python.jsonl"
            options = ["--out", str(py_out), "--min-size", str(req.threshold or 64 * 1024)]
            program = pyrunner.command(prep.argv[0], prep.python_script, env, options=options)

        # valgrind's own allocator replaces the shim's hooks, so deep mode is a second,
        # separate pass under DHAT, joined to this run's sites by file:line
        deep_env = {k: v for k, v in env.items() if not k.startswith("PLACER_")}
        dhat_file = workdir / "dhat.json"
        wrap = perf.record_prefix(status, workdir)
        if wrap:  # perf itself must not load the shim: set LD_PRELOAD after it
            argv = [*wrap, *preload_exec(preload, program)]
        else:
            env["LD_PRELOAD"] = preload
            argv = program

        inputs = {
            "chunk_bytes": req.chunk,
            "threshold": req.threshold,
            "sample_period_ms": req.sample_period_ms,
            "sample_budget_pct": budget,
            "sample_pages": req.sample_pages,
            "deep": req.deep,
            "python": prep.python_script is not None,
        }
        run_id = ingest.begin_run(
            store,
            app_name=prep.app_name,
            command=req.command,
            binary_path=prep.binary,
            build_id=prep.build_id,
            inputs=inputs,
            workdir=workdir,
        )
        _say(f"run {run_id} ({prep.app_name}): profiling {' '.join(req.command)}")
        result = run_program(argv, env)
        outcome = ingest.RunOutcome(
            status=result.status,
            exit_code=result.exit_code,
            signal=result.signal_name,
            wall_seconds=result.wall_seconds,
            forwarded=[_signame(s) for s in result.forwarded],
        )
        signals: dict[str, Any] = {}
        failed = dataclasses.replace(outcome, status="failed")
        try:
            # a Python run names objects by joining tracemalloc's sightings to each
            # allocation: every object is kept
            logs = _read_logs(workdir, summarize=False) if py_out else _read_logs(workdir)
        except PlacerError as exc:
            # nothing of an unreadable log is stored: the run is failed, with the reason
            ingest.finish_run(store, run_id, failed, {"error": str(exc)})
            raise InvalidInputError(f"run {run_id} failed: {exc}") from None
        samples = None
        perf_signals: dict[str, Any] = {"faults": status.faults, "mem": status.mem}
        if status.reason:
            perf_signals["note"] = status.reason
        if status.faults:
            samples, note = perf.read_samples(status, workdir)
            if note:
                perf_signals["note"] = note
        data = data_dir()
        sym = Symbolizer(cache_dir=data / "symcache")
        try:
            summary = ingest.ingest_profile(
                store,
                run_id,
                ingest.ProfileInputs(
                    logs=logs,
                    chunk_size=req.chunk,
                    perf_samples=samples,
                    perf_signals=perf_signals,
                    py_sightings=ingest.read_py_sightings(py_out),
                    symbolizer=sym,
                    python=py_out is not None,
                ),
                outcome,
                signals,
            )
        except PlacerError as exc:  # the one transaction rolled back: nothing half-stored
            ingest.finish_run(store, run_id, failed, {"error": str(exc)})
            raise InvalidInputError(f"run {run_id} failed: {exc}") from None
        except BaseException as exc:  # the run must not stay "running" forever
            keep = True
            with contextlib.suppress(Exception):
                ingest.finish_run(
                    store,
                    run_id,
                    failed,
                    {"error": f"ingestion failed: {type(exc).__name__}: {exc}"},
                )
            raise
        if req.deep:
            _say(f"run {run_id}: deep pass under valgrind DHAT (4-10x slower; output hidden)")
            deep_argv = [valgrind, "--tool=dhat", f"--dhat-out-file={dhat_file}", "-q", *prep.argv]
            deep = run_program(deep_argv, deep_env, quiet=True)
            if deep.status != "succeeded":
                _say(f"run {run_id}: the deep pass ended {deep.status} (exit {deep.exit_code})")
            if not dhat_file.exists():
                _say(f"run {run_id}: valgrind wrote no DHAT file; no deep statistics")
            else:
                try:
                    summary["deep"] = ingest.ingest_dhat(
                        store, run_id, dhat_file, wall_seconds=deep.wall_seconds
                    )
                except PlacerError as exc:
                    keep = True
                    ingest.mark_deep_error(store, run_id, str(exc))
                    raise InvalidInputError(f"run {run_id}: {exc}") from None
        trunc = " (shim log truncated: partial profile)" if summary.get("truncated") else ""
        _say(
            f"run {run_id} ({prep.app_name}) {result.status}, exit {result.exit_code}: "
            f"{summary['objects']} objects from {summary['allocations']} allocations{trunc}; "
            f"see `placer objects {run_id}`"
        )
        return run_id, result.exit_code, summary
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return str(sig)


def _read_logs(workdir: Path, *, summarize: bool | None = None) -> list[Any]:
    """Every process's log, each read in one pass with bounded memory (reduce.py)."""
    return [reduce_log(p, summarize=summarize) for p in sorted(workdir.glob("shim.*.log"))]
