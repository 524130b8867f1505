"""Exact traffic for a native run: one valgrind DHAT pass joined to the run's own sites.

Under valgrind the allocator is valgrind's, so the preloaded shim sees no allocation and a
``placer profile --deep`` run may hold DHAT points but no objects to join them to. The
emulator needs DHAT bytes per *native* site, so the experiment runs the same command once
under DHAT (no shim) and joins its allocation points to the native run's sites by their
``file:line`` chains (:func:`placer.collectors.profile.dhat.match_points`). Rows are stored as the
native run's DeepSiteStat, marked with where they came from, in one transaction.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.collectors.profile.dhat import match_points, read_dhat
from placer.collectors.profile.symbolize import Symbolizer
from placer.errors import ExternalToolError, InvalidInputError
from placer.store.repository.runs import (
    add_deep_site_stats,
    clear_deep_site_stats,
    find_run,
    merge_run_signals,
    sites_of_run,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def _chains(session: Session, run_id: int) -> dict[int, Sequence[str]]:
    """Site id → file:line chain, symbolizing frames again where the stored chain has none."""
    sym = Symbolizer(None)
    out: dict[int, Sequence[str]] = {}
    for site in sites_of_run(session, run_id):
        chain = list(site.symbolized or [])
        if not any(":" in c and c.rsplit(":", 1)[1].isdigit() for c in chain):
            chain = []
            for module, offset in site.frames or []:
                if os.path.isfile(str(module)):
                    got = sym.symbolize(str(module), "", [int(offset)])
                    chain.extend(got.get(int(offset), []))
        out[site.id] = chain
    return out


def dhat_pass(
    store: Any, run_id: int, command: list[str], *, timeout: float = 900.0
) -> dict[str, Any]:
    """Run ``command`` under DHAT and store its bytes per site for native run ``run_id``."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise ExternalToolError("emulated labels need valgrind (Debian: valgrind) for DHAT")
    with tempfile.TemporaryDirectory(prefix="placer-dhat-") as tmp:
        # children followed (a script driving a server and a client): one file per process
        pattern = Path(tmp) / "dhat.%p.json"
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        try:
            proc = subprocess.run(
                [
                    valgrind,
                    "--tool=dhat",
                    "--trace-children=yes",
                    f"--dhat-out-file={pattern}",
                    "-q",
                    *command,
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ExternalToolError(f"DHAT run of {command[0]} took over {timeout:.0f} s") from None
        outs = sorted(Path(tmp).glob("dhat.*.json"))
        if proc.returncode != 0 or not outs:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            raise ExternalToolError(f"DHAT run of {Path(command[0]).name} failed: {tail[0]}")
        profiles = [read_dhat(o) for o in outs]
    points = [p for prof in profiles for p in prof.points]
    time_unit = profiles[0].time_unit
    with store.session() as s:
        run = find_run(s, run_id)
        if run is None:
            raise InvalidInputError(f"run {run_id} is not in the store")
        groups = match_points(points, _chains(s, run_id))
        if not groups:
            raise InvalidInputError(
                f"run {run_id}: no DHAT allocation point matched a site of the run (are the "
                f"sites symbolized to file:line? build with -g)"
            )
        clear_deep_site_stats(s, run_id)
        add_deep_site_stats(
            s,
            run_id,
            {
                sid: {
                    "blocks": sum(p.blocks for p in points),
                    "total_bytes": sum(p.total_bytes for p in points),
                    "bytes_read": sum(p.bytes_read for p in points),
                    "bytes_written": sum(p.bytes_written for p in points),
                    "total_lifetime_ns": 0,
                    "details": {
                        "points": len(points),
                        "source": "placer experiment DHAT pass",
                        "time_unit": time_unit,
                        "total_lifetime": sum(p.total_lifetime for p in points),
                    },
                }
                for sid, points in groups.items()
            },
        )
        merge_run_signals(
            run,
            {
                "deep_pass": {
                    "tool": "dhat",
                    "points": len(points),
                    "processes": len(profiles),
                    "sites_matched": len(groups),
                }
            },
        )
    return {"points": len(points), "processes": len(profiles), "sites_matched": len(groups)}
