"""Object placement: features, baselines, the LightGBM model, the knapsack planner, plans.

Data flow (docs/architecture.md): profiled objects in the store → :mod:`.features` (cheap
signals only) → :class:`.model.PlacementModel` (ranker + penalty regressor) → :mod:`.planner`
(0/1 knapsack under a DRAM budget) → a plan file (:mod:`.planfile`) the shim applies
(:mod:`placer.act.bind` runs a program with it). :mod:`.baselines` is the one registry of
strategies (the heuristics every result is compared with, the model's and the oracle's
knapsacks), and :mod:`.evaluation` compares them leave-one-application-out.
"""

from __future__ import annotations
