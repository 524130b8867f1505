"""Per-object labels from the store: what each object costs alone in the slow tier.

Labels come from experiments (``placer experiment``): measured on a host with a slow tier,
or emulated. For each profiled run one experiment is used: a measured one when the run has
one and measured labels are allowed (measured beats emulated), else the newest emulated
experiment on the requested tier spec. Penalties are divided by the experiment's all-DRAM
baseline, so a label is a *share of runtime* (0.05 = 5% slower) comparable across programs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from placer.errors import InvalidInputError
from placer.store.repository.labels import has_object_labels, list_experiments, object_penalties
from placer.store.repository.runs import application_name, find_run

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from placer.store.models import Experiment

SOURCES = ("measured", "emulated", "all")


SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh"})


def program_of(run: Any, app_name: str) -> str:
    """The program a run executed: leave-one-*application*-out holds out every input and
    scale of one program (bfs on kron14 and on kron16 are one application), so a model is
    never judged on a program it saw. Python runs are named by their script or module, a
    shell script by its file and ``sh -c 'exec "$@"' sh PROG ARGS`` by PROG, all without
    the extension: the names :data:`placer.contracts.examples.HELDOUT_APPS` uses."""
    cmd = [str(c) for c in (run.command or [])] if run is not None else []
    return command_program(cmd) or app_name


def command_program(cmd: list[str]) -> str | None:
    """:func:`program_of` on a command line; None when it names no program."""
    if not cmd:
        return None
    name = os.path.basename(cmd[0])
    args = cmd[1:]
    if name.startswith("python"):
        if "-m" in args[:-1]:
            return args[args.index("-m") + 1]
        rest = [c for c in args if not c.startswith("-")]
        return _stem(rest[0]) if rest else None
    if name in SHELLS:
        if "-c" in args[:-1]:
            i = args.index("-c")
            script, positional = args[i + 1], args[i + 2 :]
            # positional[0] is $0; a script that runs "$@" or $1 runs the next argument
            if re.search(r'"?\$(@|\{@\}|1)"?', script) and len(positional) > 1:
                return command_program(positional[1:])
            words = script.replace("exec ", " ").split()
            return os.path.basename(words[0]) if words else None
        rest = [c for c in args if not c.startswith("-")]
        return _stem(rest[0]) if rest else name
    return name


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for ext in (".py", ".sh"):
        if base.endswith(ext) and len(base) > len(ext):
            return base[: -len(ext)]
    return base


@dataclass
class RunLabels:
    """The labels of one profiled run from one experiment."""

    run_id: int
    app: str
    build_id: str
    experiment_id: int
    emulated: bool
    tier_spec_name: str
    host_id: int | None
    baseline_seconds: float
    penalties: dict[int, float] = field(default_factory=dict)  # object id → seconds
    app_name: str = ""  # the Application row's name (e.g. bfs-kron16); ``app`` is the program
    chunk_bytes: int | None = None  # the profile's --chunk (None: objects whole)

    def shares(self) -> dict[int, float]:
        """object id → penalty / baseline (slowdown share if that object alone is slow)."""
        return {k: v / self.baseline_seconds for k, v in self.penalties.items()}

    def describe(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "app": self.app,
            "app_name": self.app_name,
            "experiment": self.experiment_id,
            "emulated": self.emulated,
            "tier_spec": self.tier_spec_name,
            "host": self.host_id,
            "objects": len(self.penalties),
            "chunk_bytes": self.chunk_bytes,
        }


def load_labels(
    session: Session,
    source: str = "all",
    tier: str | None = "optane",
    run_ids: list[int] | None = None,
) -> list[RunLabels]:
    """Labels per run, one experiment each (measured preferred when ``source`` is all).

    ``tier`` filters emulated experiments by tier spec name (None: any); measured ones are
    on whatever slow tier their host has and are never filtered out by it.
    """
    if source not in SOURCES:
        raise InvalidInputError(f"--from-labels must be one of {', '.join(SOURCES)}")
    chosen: dict[int, Experiment] = {}
    for exp in list_experiments(session, run_ids):
        if exp.emulated and (source == "measured" or (tier and exp.tier_spec_name != tier)):
            continue
        if not exp.emulated and source == "emulated":
            continue
        if not has_object_labels(session, exp.id):
            continue
        prev = chosen.get(exp.run_id)
        # measured beats emulated; among equals the newest wins
        if prev is None or (prev.emulated and not exp.emulated) or prev.emulated == exp.emulated:
            chosen[exp.run_id] = exp
    out: list[RunLabels] = []
    for run_id, exp in sorted(chosen.items()):
        run = find_run(session, run_id)
        name = application_name(session, run.application_id) if run else None
        rows = object_penalties(session, exp.id)
        penalties: dict[int, float] = {}
        obj_run = run_id
        for oid, pen, orun in rows:
            if oid is None:
                continue
            penalties[oid] = max(float(pen or 0.0), 0.0)
            obj_run = orun
        base = exp.baseline_seconds or (run.program_seconds if run else None)
        if not base or base <= 0 or not penalties:
            continue
        out.append(
            RunLabels(
                run_id=obj_run,
                app=program_of(run, name if name is not None else str(run_id)),
                app_name=name if name is not None else str(run_id),
                build_id=run.build_id if run else "",
                experiment_id=exp.id,
                emulated=bool(exp.emulated),
                tier_spec_name=exp.tier_spec_name,
                host_id=exp.host_id,
                baseline_seconds=float(base),
                penalties=penalties,
                chunk_bytes=_chunk_bytes(run),
            )
        )
    return out


def _chunk_bytes(run: Any) -> int | None:
    """The chunk size a run was profiled with (``placer profile --chunk``), None if unchunked."""
    size = ((run.inputs or {}) if run is not None else {}).get("chunk_bytes")
    return int(size) if isinstance(size, int) and size > 0 else None
