"""``placer doctor``: what this host offers placer."""

from __future__ import annotations

import argparse
from typing import Any

from placer.cli.context import Context
from placer.doctor import run_doctor

_MARK = {"ok": "ok", "warn": "!!", "missing": "--", "unsupported": "--", "error": "XX"}


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("doctor", parents=[common])
    p.add_argument("--sys-root", default="/", help=argparse.SUPPRESS)  # recorded sysfs trees
    p.set_defaults(handler=_doctor)


def _render(doc: dict[str, Any]) -> None:
    host = doc["host"]
    print(f"host {host['hostname']}: {host['cpus']} CPUs, kernel {host['kernel']}")
    width = max(len(f["name"]) for f in doc["findings"])
    for f in doc["findings"]:
        print(f"[{_MARK.get(f['status'], '??')}] {f['name']:<{width}}  {f['detail']}")


def _doctor(args: argparse.Namespace, ctx: Context) -> int:
    ctx.emit(run_doctor(ctx.store_url, sys_root=args.sys_root), _render)
    return 0
