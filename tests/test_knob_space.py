"""One knob space: its wire form round-trips, and tuner and daemon sample it alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from placer.contracts.pipeline import ChoiceKnob, IntKnob, Knob, from_wire, to_wire
from placer.daemon.decide import PipelineTuner, parse_knob_space
from placer.errors import InvalidInputError
from placer.tuners.space import distributions, suggest


@st.composite
def int_knobs(draw: Any) -> IntKnob:
    log = draw(st.booleans())
    low = draw(st.integers(1 if log else -50, 50))
    return IntKnob(low, draw(st.integers(low, low + 100)), log)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
choice_knobs = st.lists(scalars, min_size=1, max_size=5, unique_by=repr).map(
    lambda cs: ChoiceKnob(tuple(cs))
)
spaces = st.dictionaries(
    st.text(min_size=1, max_size=12), st.one_of(int_knobs(), choice_knobs), min_size=1
)


@given(spaces)
def test_wire_form_round_trips_every_field(knobs: dict[str, Knob]) -> None:
    wire = json.loads(json.dumps(to_wire(knobs)))  # what crosses the daemon's socket
    assert from_wire(wire) == knobs
    assert parse_knob_space(wire) == to_wire(knobs)


@given(spaces)
def test_tuner_and_daemon_get_identical_distributions(knobs: dict[str, Knob]) -> None:
    tuner = distributions(knobs)
    daemon = PipelineTuner(parse_knob_space(to_wire(knobs)), {}, trials=1)._dists()
    assert daemon == tuner


def test_log_scale_survives_the_wire() -> None:
    knobs: dict[str, Knob] = {"parallelism.read": IntKnob(1, 64, log=True)}
    assert to_wire(knobs) == {"parallelism.read": {"low": 1, "high": 64, "log": True}}
    assert distributions(from_wire(to_wire(knobs)))["parallelism.read"].log is True


def test_suggest_samples_inside_the_space() -> None:
    import optuna

    knobs: dict[str, Knob] = {"w": IntKnob(1, 8, log=True), "cache": ChoiceKnob((None, "a"))}
    study = optuna.create_study()
    trial = study.ask()
    config = suggest(trial, knobs)
    assert 1 <= config["w"] <= 8 and config["cache"] in (None, "a")
    assert trial.distributions == distributions(knobs)


@pytest.mark.parametrize(
    "bad",
    [
        {"w": {"low": 0, "high": 4, "log": True}},
        {"w": {"low": 1, "high": 4, "log": "yes"}},
    ],
)
def test_bad_log_knobs_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        from_wire(bad)
