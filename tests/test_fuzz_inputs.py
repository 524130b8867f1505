"""Fuzzing what a program or a user hands placer: shim logs and plan files (issue 16).

Every input ends in success or in a :class:`PlacerError` (one line, exit 2): never another
exception, a hang, or a half-stored run. Bounded: a few hundred examples, no deadline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placer.act.bind import plan_bindings
from placer.cli.profile import objects_document
from placer.collectors.profile import ingest
from placer.collectors.shim.log import ShimLog, read_log
from placer.errors import PlacerError
from placer.placement.planfile import parse_plan
from placer.store import Store
from tests.shim_logs import small_shim_log

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def real_log(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return small_shim_log(tmp_path_factory.mktemp("fuzzlog")).read_bytes()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    s = Store(f"sqlite:///{tmp_path_factory.mktemp('fuzzstore') / 'p.db'}")
    s.upgrade()
    return s


_WORDS = [b"\xff" * 8, b"\x00" * 8, (2**63).to_bytes(8, "little"), b"\x7f" * 8]
mutation = st.tuples(
    st.floats(0, 1),  # where
    st.one_of(st.integers(0, 255).map(lambda b: bytes([b])), st.sampled_from(_WORDS)),
)


def _mutate(data: bytes, edits: list[tuple[float, bytes]], cut: float | None) -> bytes:
    out = bytearray(data)
    for where, chunk in edits:
        at = int(where * (len(out) - 1))
        out[at : at + len(chunk)] = chunk
    if cut is not None:
        out = out[: int(cut * len(out))]
    return bytes(out)


def _ingest_or_refuse(store: Store, path: Path) -> None:
    """Read and store the log as ``placer profile`` does; a refusal stores no object."""
    try:
        log = read_log(path)
    except PlacerError:
        return
    assert isinstance(log, ShimLog)
    run_id = ingest.begin_run(
        store, app_name="fuzz", command=["p"], binary_path="/p", build_id="", inputs={}
    )
    try:
        ingest.ingest_profile(
            store,
            run_id,
            ingest.ProfileInputs(logs=[log], chunk_size=1 << 20),
            ingest.RunOutcome("succeeded", 0, None, 0.1),
        )
    except PlacerError:
        assert objects_document(store, run_id)["objects"] == []


@FUZZ
@given(edits=st.lists(mutation, min_size=1, max_size=8), cut=st.none() | st.floats(0, 1))
def test_mutated_shim_logs(
    real_log: bytes, store: Store, tmp_path: Path, edits: list[tuple[float, bytes]], cut: float
) -> None:
    path = tmp_path / "shim.1.log"
    path.write_bytes(_mutate(real_log, edits, cut))
    _ingest_or_refuse(store, path)


@FUZZ
@given(data=st.binary(max_size=2048))
def test_random_bytes_after_a_real_header(
    real_log: bytes, store: Store, tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "shim.1.log"
    path.write_bytes(real_log[:64] + data)
    _ingest_or_refuse(store, path)


# ------------------------------------------------------------------------ plans
VALID: dict[str, Any] = {
    "format": "placer-plan",
    "version": 1,
    "build_id": "",
    "budget": {"bytes": 10, "fraction": 0.5, "footprint_bytes": 20},
    "nodes": {"dram": 0, "slow": 0, "default_tier": "dram"},
    "decisions": [
        {"site": "00112233445566aa", "chunk": 0, "tier": "slow", "node": 0, "size_bytes": 4096},
        {"site": "00112233445566ab", "chunk": 1, "tier": "dram", "node": 0},
    ],
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)


def _replace(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with the node reached by ``path`` (indices into keys/items) replaced."""
    if not path or not isinstance(doc, dict | list) or not doc:
        return value
    if isinstance(doc, dict):
        key = list(doc)[path[0] % len(doc)]
        return {**doc, key: _replace(doc[key], path[1:], value)}
    i = path[0] % len(doc)
    return [*doc[:i], _replace(doc[i], path[1:], value), *doc[i + 1 :]]


def _parse_or_refuse(text: str) -> None:
    try:
        doc = parse_plan(text, "plan")
    except PlacerError as exc:
        assert "\n" not in str(exc)
        return
    plan_bindings(doc, None)  # what `placer run --plan` does next


@FUZZ
@given(doc=json_values)
def test_random_json_plans(doc: Any) -> None:
    _parse_or_refuse(json.dumps(doc))


@FUZZ
@given(path=st.lists(st.integers(0, 10), max_size=4), value=json_values)
def test_mutated_valid_plans(path: list[int], value: Any) -> None:
    _parse_or_refuse(json.dumps(_replace(VALID, path, value)))


@FUZZ
@given(text=st.text(max_size=200))
def test_random_text_plans(text: str) -> None:
    _parse_or_refuse(text)
