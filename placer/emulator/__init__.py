"""The slow-tier emulator: how long a profiled run would take under a placement.

``estimate(profile, slow_objects, spec, ref, host)`` gives the runtime and every object's
penalty; :func:`placer.emulator.load.load_profile` reads a run from the store. The model
and its constants are written down in ``docs/emulator.md``.
"""

from placer.emulator.model import (
    Estimate,
    HostDram,
    ObjectCost,
    ObjectTraffic,
    RunProfile,
    costs,
    estimate,
    ratios,
)

__all__ = [
    "Estimate",
    "HostDram",
    "ObjectCost",
    "ObjectTraffic",
    "RunProfile",
    "costs",
    "estimate",
    "ratios",
]
