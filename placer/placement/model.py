"""The placement model: a LightGBM lambdarank ranker plus a per-object penalty regressor.

* The **ranker** (``LGBMRanker``, lambdarank, one query group per profiled run) orders a
  run's objects by criticality; it is what ``placer recommend`` lists and what NDCG@5 and
  the top-1 hit rate measure.
* The **penalty regressor** predicts each object's slowdown share if it alone lived in the
  slow tier (label / all-DRAM runtime). The planner sums these as the value of keeping a
  site in DRAM, so plans and their predicted slowdown come from it.

Both are kept as LightGBM text models (``Booster.model_to_string``) with JSON metadata, in
the store or in the shipped default model; never pickled. LightGBM is imported lazily.
"""

from __future__ import annotations

import math
import platform
from typing import TYPE_CHECKING, Any

from placer import __version__
from placer.errors import InvalidInputError, NotFoundError
from placer.placement.features import FEATURES, RETIRED, matrix

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MODEL_FORMAT = "placer-placement-model"
MODEL_FORMAT_VERSION = 1
GRADES = 4  # relevance grades 1..GRADES for objects with a penalty, 0 for none
ZERO_SHARE = 1e-4  # a penalty under 0.01% of runtime counts as none


def relevance(shares: pd.Series, groups: pd.Series) -> np.ndarray:
    """Integer relevance per object: 0 without penalty, else 1..GRADES by rank in its run."""
    import numpy as np  # lazy: heavy

    out = np.zeros(len(shares), dtype=int)
    values = shares.to_numpy(dtype=float)
    for _, idx in groups.groupby(groups, sort=False).groups.items():
        pos = np.asarray([shares.index.get_loc(i) for i in idx])
        v = values[pos]
        hot = v > ZERO_SHARE
        if hot.any():
            order = v[hot].argsort().argsort()  # 0 = smallest penalty
            pct = (order + 1) / hot.sum()
            out[pos[hot]] = 1 + np.minimum(GRADES - 1, np.floor(pct * GRADES - 1e-9)).astype(int)
    return out


class PlacementModel:
    """Ranker + penalty regressor on :data:`~placer.placement.features.FEATURES`.

    Parameters are LightGBM's, shared by both models; ``target`` picks what the regressor
    learns: ``"share"`` (penalty share of runtime, as log1p of percent; the constructor's
    default) or ``"per_byte"`` (penalty share per footprint share, multiplied back by size).
    Which target and how much regularization a trained model uses is chosen by
    leave-one-application-out on the training applications
    (:data:`placer.placement.evaluation.CANDIDATES`, :func:`~placer.placement.evaluation.
    select_params`), never by looking at an application the model is judged on.
    Learned attributes: ``ranker_`` and ``penalty_`` (LightGBM boosters), ``meta_``.
    """

    def __init__(
        self,
        features: list[str] | None = None,
        *,
        n_estimators: int = 150,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 5,
        subsample: float = 1.0,
        target: str = "share",
        random_state: int = 0,
    ) -> None:
        self.features = features
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.target = target
        self.random_state = random_state

    # -- parameters ------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": self.subsample,
            "target": self.target,
            "random_state": self.random_state,
        }

    def _lgbm_params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "subsample": self.subsample,
            "subsample_freq": 1 if self.subsample < 1 else 0,
            "random_state": self.random_state,
            "n_jobs": 1,
            "deterministic": True,
            "force_row_wise": True,
            "min_data_in_bin": 1,
            "verbose": -1,
        }

    @property
    def feature_names_(self) -> list[str]:
        return list(self.features or FEATURES)

    # -- target transform --------------------------------------------------------------
    def _encode(self, share: pd.Series, table: pd.DataFrame) -> np.ndarray:
        import numpy as np  # lazy: heavy

        y = share.to_numpy(dtype=float)
        if self.target == "per_byte":
            y = y / np.maximum(table["size_share"].to_numpy(dtype=float), 1e-9)
        elif self.target != "share":
            raise InvalidInputError(f"unknown target {self.target!r} (share or per_byte)")
        encoded: np.ndarray = np.log1p(100.0 * np.maximum(y, 0.0))
        return encoded

    def _decode(self, raw: np.ndarray, table: pd.DataFrame) -> np.ndarray:
        import numpy as np  # lazy: heavy

        y = np.expm1(np.maximum(raw, 0.0)) / 100.0
        if self.target == "per_byte":
            y = y * table["size_share"].to_numpy(dtype=float)
        decoded: np.ndarray = y
        return decoded

    # -- fit / predict ---------------------------------------------------------------
    def fit(self, table: pd.DataFrame, shares: pd.Series, groups: pd.Series) -> PlacementModel:
        """Fit on per-object rows of several runs; ``groups`` (run ids) are the queries."""
        import lightgbm as lgb  # lazy: heavy
        import numpy as np  # lazy: heavy

        if len(table) == 0:
            raise InvalidInputError("no labeled objects to train on")
        order = np.argsort(groups.to_numpy(), kind="stable")
        table = table.iloc[order].reset_index(drop=True)
        shares = shares.iloc[order].reset_index(drop=True)
        groups = groups.iloc[order].reset_index(drop=True)
        X = matrix(table, self.feature_names_)
        sizes = groups.groupby(groups, sort=False).size().to_numpy()
        rel = relevance(shares, groups)
        ranker = lgb.LGBMRanker(
            objective="lambdarank", label_gain=[0, 1, 3, 7, 15], **self._lgbm_params()
        )
        ranker.fit(X, rel, group=sizes)
        reg = lgb.LGBMRegressor(objective="regression", **self._lgbm_params())
        reg.fit(X, self._encode(shares, table))
        self.ranker_ = ranker.booster_
        self.penalty_ = reg.booster_
        self.meta_: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "features": self.feature_names_,
            "params": self.get_params(),
            "training": {"objects": int(len(table)), "runs": int(len(sizes))},
            "versions": _versions(),
        }
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "penalty_"):
            raise NotFoundError("the placement model is not trained")

    def rank_scores(self, table: pd.DataFrame) -> np.ndarray:
        """Ranker scores (higher = more critical); comparable within one run only."""
        self._check_fitted()
        import numpy as np  # lazy: heavy

        return np.asarray(self.ranker_.predict(matrix(table, self.feature_names_)))

    def predict_penalty(self, table: pd.DataFrame) -> np.ndarray:
        """Predicted slowdown share of each object if it alone were in the slow tier."""
        self._check_fitted()
        import numpy as np  # lazy: heavy

        raw = np.asarray(self.penalty_.predict(matrix(table, self.feature_names_)))
        return self._decode(raw, table)

    def penalties(self, table: pd.DataFrame) -> dict[int, float]:
        """object id -> predicted penalty share: what the model's knapsack plans with (one
        place, so ``placer recommend`` and ``placer evaluate`` make the same plan)."""
        pred = self.predict_penalty(table)
        return {int(o): float(v) for o, v in zip(table["object_id"], pred, strict=True)}

    # -- persistence (text + JSON, never pickle) ---------------------------------------
    def to_texts(self) -> tuple[str, str, dict[str, Any]]:
        self._check_fitted()
        return self.ranker_.model_to_string(), self.penalty_.model_to_string(), dict(self.meta_)

    @classmethod
    def from_texts(
        cls, ranker_text: str, penalty_text: str, meta: dict[str, Any]
    ) -> PlacementModel:
        import lightgbm as lgb  # lazy: heavy

        if meta.get("format") != MODEL_FORMAT or meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise InvalidInputError(
                f"model metadata is not a {MODEL_FORMAT} v{MODEL_FORMAT_VERSION} document"
            )
        params = dict(meta.get("params") or {})
        params["features"] = list(meta.get("features") or FEATURES)
        model = cls(params.pop("features"), **params)
        try:
            model.ranker_ = lgb.Booster(model_str=ranker_text)
            model.penalty_ = lgb.Booster(model_str=penalty_text)
        except lgb.basic.LightGBMError as exc:
            raise InvalidInputError(f"cannot read LightGBM model text: {exc}") from None
        model.meta_ = dict(meta)
        model.check_features()
        return model

    def check_features(self) -> None:
        """One-line error unless the boosters were trained on this model's feature list and
        every feature is one this version computes (a mismatch would predict garbage)."""
        names = self.feature_names_
        unknown = [f for f in names if f not in FEATURES and f not in RETIRED]
        if unknown:
            raise InvalidInputError(
                f"the model's feature {unknown[0]!r} is not one this version of placer "
                f"computes: retrain it (`placer train`)"
            )
        for kind, booster in (("ranker", self.ranker_), ("penalty", self.penalty_)):
            if list(booster.feature_name()) != names:
                raise InvalidInputError(
                    f"the model's {kind} was trained on {booster.num_feature()} features "
                    f"that do not match its feature list ({len(names)}: "
                    f"{', '.join(names[:3])}...): retrain it (`placer train`)"
                )


def _versions() -> dict[str, str]:
    import lightgbm  # lazy: heavy
    import numpy  # lazy: heavy
    import pandas  # lazy: heavy

    return {
        "placer": __version__,
        "lightgbm": lightgbm.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "python": platform.python_version(),
    }


def finite(x: float) -> float | None:
    """JSON-safe float."""
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else float(x)
