"""Plans outside placer: the environment that binds a plan, for whoever starts the program.

``placer run --plan`` starts the program itself. A service started by systemd, a container
entrypoint or a job scheduler needs the same thing as variables: the shim preloaded and the
plan's bindings (:func:`placer.act.bind.plan_env`, the very variables ``run --plan`` uses).
:func:`export_plan` writes the shim's plan lines next to the plan and renders those
variables as an environment file, a systemd drop-in or JSON, or gives the closest
whole-process ``numactl`` policy, with what that loses against per-object binding.

What export cannot do that ``run --plan`` does: check the program's build id (it does not
see the program), sample numa_maps, store the run, and bind a Python script's objects one
by one (the Python runner); a Python plan binds through the native sites it maps to.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from placer.act.bind import PlanBindings, check_plan_host, plan_bindings, plan_env
from placer.errors import InvalidInputError

FORMATS = ("env", "systemd", "json", "numactl")

#: Values an environment file can hold unquoted for systemd, docker --env-file and sh alike.
_PLAIN = re.compile(r"^[A-Za-z0-9_./,:%+=@-]*$")


def shim_plan_path(plan: Path) -> Path:
    """Where the shim's plan lines are written by default: beside the plan."""
    return plan.resolve().with_suffix(".shim")


def log_pattern(plan: Path) -> str:
    """The shim log of each process (``%p``: its pid), by default beside the plan."""
    plan = plan.resolve()
    return str(plan.with_name(f"{plan.stem}.shim.%p.log"))


def export_plan(
    doc: dict[str, Any],
    plan: Path,
    fmt: str,
    *,
    chunk_bytes: int | None,
    force: bool = False,
    shim_plan: Path | None = None,
    log: str | None = None,
) -> str:
    """The plan ``doc`` (read from ``plan``) as ``fmt`` (one of :data:`FORMATS`).

    Refuses a plan from another host unless ``force``, as ``run --plan`` does. Every format
    but ``numactl`` writes the shim's plan lines to ``shim_plan`` (default
    :func:`shim_plan_path`), which the variables name by absolute path.
    """
    if fmt not in FORMATS:
        raise InvalidInputError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    check_plan_host(doc, f"plan {plan}", force=force)
    if fmt == "numactl":
        return numactl(doc)
    bindings = plan_bindings(doc, chunk_bytes)
    target = (shim_plan or shim_plan_path(plan)).resolve()
    try:
        target.write_text("\n".join(bindings.lines) + "\n")
    except OSError as exc:
        raise InvalidInputError(f"cannot write {target}: {exc.strerror}") from None
    env = plan_env(target, log or log_pattern(plan), inherit_preload=False)
    head = _header(doc, plan, bindings)
    if fmt == "json":
        return json.dumps(_document(doc, plan, target, env, bindings), indent=2) + "\n"
    if fmt == "env":
        lines = [f"# {h}" for h in head]
        lines.append("# systemd: EnvironmentFile=THIS_FILE; docker/podman: --env-file THIS_FILE;")
        lines.append("# sh: set -a; . THIS_FILE; set +a")
        lines += [f"{k}={_value(v)}" for k, v in env.items()]
        return "\n".join(lines) + "\n"
    lines = [f"# {h}" for h in head]
    lines.append(
        "# drop-in: /etc/systemd/system/UNIT.service.d/placer-plan.conf, then "
        "`systemctl daemon-reload` (or EnvironmentFile= an env export)"
    )
    lines.append("[Service]")
    lines += [f'Environment="{k}={_systemd_escape(v)}"' for k, v in env.items()]
    return "\n".join(lines) + "\n"


def _header(doc: dict[str, Any], plan: Path, bindings: PlanBindings) -> list[str]:
    """Comment lines: which plan, for which binary, and what the shim will not bind."""
    out = [
        f"placer plan {plan.resolve()}: app {doc.get('app') or '?'}, build id "
        f"{str(doc.get('build_id') or 'none')[:16]}, {len(bindings.lines)} bindings"
        + bindings.note(),
        "the program's build id is not checked here: use it only for that binary",
    ]
    if bindings.unbound:
        out.append(
            f"{len(bindings.unbound)} native sites shared by objects on different nodes left "
            "unbound (`placer run --plan` binds a Python script's objects one by one)"
        )
    return out


def _document(
    doc: dict[str, Any], plan: Path, shim_plan: Path, env: dict[str, str], b: PlanBindings
) -> dict[str, Any]:
    return {
        "plan": str(plan.resolve()),
        "app": doc.get("app"),
        "build_id": doc.get("build_id"),
        "shim_plan": str(shim_plan),
        "bindings": len(b.lines),
        "split_sites": b.split,
        "split_sites_bound_whole": b.collapsed,
        "native_sites_unbound": b.unbound,
        "env": env,
    }


def _value(v: str) -> str:
    if _PLAIN.match(v):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _systemd_escape(v: str) -> str:
    """A value inside ``Environment="..."``: quotes and backslashes escaped, ``%`` doubled
    (systemd expands ``%`` specifiers)."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def numactl(doc: dict[str, Any]) -> str:
    """The closest whole-process ``numactl`` policy to a plan, and what it loses.

    All planned bytes in DRAM (or one node only): prefer the DRAM node. A DRAM budget of a
    quarter to three quarters of the footprint: interleave DRAM and the slow node (about
    half of every object in DRAM). Above: prefer DRAM (it fills by first touch, then
    spills). Below: prefer the slow node.
    """
    nodes = doc["nodes"]
    dram, slow = int(nodes["dram"]), int(nodes["slow"])
    slow_bytes = sum(int(d.get("size_bytes", 0)) for d in doc["decisions"] if d["tier"] == "slow")
    fraction = float(doc["budget"]["fraction"])
    kept = sum(1 for d in doc["decisions"] if d["tier"] == "dram")
    if slow == dram or slow_bytes == 0:
        cmd = f"numactl --preferred={dram} --"
        loses = (
            "loses nothing the plan asks for (every planned object stays in DRAM); "
            "unplanned data prefers DRAM too"
        )
    elif 0.25 <= fraction <= 0.75:
        cmd = f"numactl --interleave={dram},{slow} --"
        loses = (
            f"loses which objects stay in DRAM: every object is split about half and half, "
            f"the {kept} critical ones the plan keeps in DRAM included "
            f"(plan: {100 * fraction:.0f}% of the footprint in DRAM)"
        )
    elif fraction > 0.75:
        cmd = f"numactl --preferred={dram} --"
        loses = (
            "loses the DRAM budget and the choice: DRAM fills by first touch until it is "
            "full, whatever is critical, then pages spill to the slow tier"
        )
    else:
        cmd = f"numactl --preferred={slow} --"
        loses = (
            f"loses the {kept} critical objects the plan keeps in DRAM: they go to the slow "
            "tier with the rest"
        )
    return f"# whole-process policy, not per-object binding: {loses}\n{cmd} CMD ARGS\n"
