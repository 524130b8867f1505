"""The one mapping from pipeline knobs to Optuna's search space.

``placer tune`` (:mod:`placer.tuners.tuning`, define-by-run) and the daemon's ask-and-tell loop
(:class:`placer.daemon.decide.PipelineTuner`, which reads the job's space in its wire form,
:func:`placer.contracts.pipeline.from_wire`) both sample through :func:`distributions`, so
a knob means the same search range (and scale) whichever of them tunes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from placer.contracts.pipeline import ChoiceKnob, Config, IntKnob, Knob
from placer.errors import InvalidInputError


def distributions(knobs: Mapping[str, Knob]) -> dict[str, Any]:
    """Each knob's Optuna distribution (``optuna.distributions.BaseDistribution``)."""
    from optuna.distributions import (  # lazy: heavy
        BaseDistribution,
        CategoricalDistribution,
        IntDistribution,
    )

    out: dict[str, BaseDistribution] = {}
    for key, knob in knobs.items():
        if isinstance(knob, IntKnob):
            out[key] = IntDistribution(knob.low, knob.high, log=knob.log)
        elif isinstance(knob, ChoiceKnob):
            out[key] = CategoricalDistribution(list(knob.choices))
        else:
            raise InvalidInputError(f"knob {key!r} has unsupported type {type(knob).__name__}")
    return out


def suggest(trial: Any, knobs: Mapping[str, Knob]) -> Config:
    """Sample every knob in ``trial`` (define-by-run) from :func:`distributions`."""
    from optuna.distributions import CategoricalDistribution  # lazy: heavy

    config: Config = {}
    for key, dist in distributions(knobs).items():
        if isinstance(dist, CategoricalDistribution):
            config[key] = trial.suggest_categorical(key, list(dist.choices))
        else:
            config[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.step, log=dist.log)
    return config
