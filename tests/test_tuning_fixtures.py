"""Pipeline builders the tuning tests name as ``test_tuning_fixtures:function`` (no tests here).

Each does real (small) work through :mod:`placer.tuners.synthetic`; the misbehaving ones count
their builds in the file named by ``PLACER_TEST_BUILD_COUNTER`` (shared by forked
measuring processes) and misbehave on one chosen build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from placer.contracts.pipeline import PipelineDef
from placer.tuners.synthetic import synthetic_cpu

COUNTER_ENV = "PLACER_TEST_BUILD_COUNTER"


def tiny() -> PipelineDef:
    """A fast CPU pipeline: 64 records, batches of 8, light decode."""
    defn = synthetic_cpu(n=64, batch_size=8, rounds=200)
    defn.name = "tiny"
    return defn


def raising_builder() -> PipelineDef:
    raise ValueError("the dataset path is not configured")


def _count() -> int:
    path = Path(os.environ[COUNTER_ENV])
    n = int(path.read_text() or "0") + 1 if path.exists() else 1
    path.write_text(str(n))
    return n


def _misbehaving(kind: str, on_build: int) -> PipelineDef:
    defn = tiny()
    inner = defn.build

    def build(config: dict[str, Any], probes: Any) -> Iterable[Any]:
        if _count() == on_build:
            if kind == "hang":
                while True:
                    time.sleep(3600)
            raise RuntimeError("corrupt record 17")
        return inner(config, probes)

    defn.build = build
    defn.name = f"tiny-{kind}"
    return defn


def hangs_on_fourth_build() -> PipelineDef:
    """Build 1 profiles, 2-3 are trial 0's two steps, build 4 (trial 1) never returns."""
    return _misbehaving("hang", 4)


def raises_on_fourth_build() -> PipelineDef:
    return _misbehaving("raise", 4)
