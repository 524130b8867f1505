"""Where placement models live: TrainedModel rows in the store, or the shipped default.

A trained model is two rows with the same name stem and version: ``<name>.ranker`` (kind
``ranker``) and ``<name>.penalty`` (kind ``penalty``), each holding LightGBM text and the
shared JSON metadata. The shipped default model is the same three things as files in
``placer/placement/default/`` (``ranker.txt``, ``penalty.txt``, ``meta.json``), built by
``python -m placer.placement.default_model``. The newest stored model wins over the
default, so ``placer train`` on the user's own labels takes over from it.
``placer evaluate --model`` names one explicitly (:func:`resolve_model`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from placer.errors import InvalidInputError, NotFoundError
from placer.placement.model import PlacementModel
from placer.store.repository.labels import (
    add_trained_model,
    latest_model,
    latest_model_version,
    model_version,
    stored_models,
    trained_model_by_id,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from placer.store.models import TrainedModel

DEFAULT_NAME = "placement"
DEFAULT_DIR = ("placer.placement", "default")
DIR_ENV = "PLACER_DEFAULT_MODEL_DIR"


@dataclass
class LoadedModel:
    model: PlacementModel
    name: str
    version: str  # "placement@3" or "default@<placer version>"
    source: str  # store | default
    penalty_row_id: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "id": self.penalty_row_id,
            "features": self.model.feature_names_,
            "trained_on": (self.model.meta_ or {}).get("training", {}),
        }


def save_model(session: Session, model: PlacementModel, name: str = DEFAULT_NAME) -> LoadedModel:
    """Store both boosters as a new version of ``name``; returns what was stored."""
    ranker_text, penalty_text, meta = model.to_texts()
    version = latest_model_version(session, [f"{name}.ranker", f"{name}.penalty"]) + 1
    meta = dict(meta, name=name, version=version)
    add_trained_model(
        session,
        name=f"{name}.ranker",
        version=version,
        kind="ranker",
        model_text=ranker_text,
        meta=meta,
    )
    pen = add_trained_model(
        session,
        name=f"{name}.penalty",
        version=version,
        kind="penalty",
        model_text=penalty_text,
        meta=meta,
    )
    model.meta_ = meta
    return LoadedModel(model, name, f"{name}@{version}", "store", pen.id)


def default_files() -> dict[str, Any] | None:
    """The shipped default model's texts and metadata, or None if not built.

    ``$PLACER_DEFAULT_MODEL_DIR`` points at another directory of the same three files.
    """
    override = os.environ.get(DIR_ENV)
    base: Any = (
        Path(override) if override else resources.files(DEFAULT_DIR[0]).joinpath(DEFAULT_DIR[1])
    )
    try:
        return {
            "ranker": base.joinpath("ranker.txt").read_text("utf-8"),
            "penalty": base.joinpath("penalty.txt").read_text("utf-8"),
            "meta": json.loads(base.joinpath("meta.json").read_text("utf-8")),
        }
    except (FileNotFoundError, NotADirectoryError):
        return None


def load_model(
    session: Session, name: str = DEFAULT_NAME, *, allow_default: bool = True
) -> LoadedModel:
    """The newest stored model ``name``, else the shipped default; one-line error if none."""
    pen = latest_model(session, f"{name}.penalty")
    if pen is not None:
        rank = model_version(session, f"{name}.ranker", pen.version)
        if rank is not None:
            return _stored(rank, pen, name)
    files = default_files() if allow_default else None
    if files is None:
        raise NotFoundError(
            "no placement model: none trained in this store and no default model shipped; "
            "run `placer train` on labeled runs (see `placer experiment`)"
        )
    return _default(files)


def resolve_model(session: Session, ref: str) -> LoadedModel:
    """The model ``ref`` names: ``default`` (the shipped one), a stored model's id (either
    row of the pair; ``placer train`` prints the penalty row's) or ``NAME@VERSION``."""
    ref = ref.strip()
    if ref == "default":
        files = default_files()
        if files is None:
            raise NotFoundError(
                "no default model shipped with this installation "
                f"(or ${DIR_ENV} points at a directory without one)"
            )
        return _default(files)
    if ref.isdigit():
        row = trained_model_by_id(session, int(ref))
        if row is None or row.kind not in ("ranker", "penalty"):
            rows = stored_models(session)
            ids = ", ".join(f"{r.id} ({_stem(r.name)}@{r.version})" for r in rows[-5:])
            ids = ("..., " if len(rows) > 5 else "") + ids
            raise NotFoundError(
                f"no stored model with id {ref} in this store (stored: {ids or 'none'}; "
                "or give --model default)"
            )
        stem, version = _stem(row.name), row.version
    elif "@" in ref and ref.rsplit("@", 1)[1].isdigit():
        stem, v = ref.rsplit("@", 1)
        version = int(v)
    else:
        raise InvalidInputError(
            f"--model {ref!r}: give default, a stored model id (as `placer train` prints it) "
            "or NAME@VERSION"
        )
    pen = model_version(session, f"{stem}.penalty", version)
    rank = model_version(session, f"{stem}.ranker", version)
    if pen is None or rank is None:
        raise NotFoundError(f"model {stem}@{version} is not in this store (both rows needed)")
    return _stored(rank, pen, stem)


def _stem(row_name: str) -> str:
    return row_name.rsplit(".", 1)[0] if row_name.endswith((".ranker", ".penalty")) else row_name


def _stored(rank: TrainedModel, pen: TrainedModel, name: str) -> LoadedModel:
    model = PlacementModel.from_texts(rank.model_text, pen.model_text, pen.meta or {})
    return LoadedModel(model, name, f"{name}@{pen.version}", "store", pen.id)


def _default(files: dict[str, Any]) -> LoadedModel:
    model = PlacementModel.from_texts(files["ranker"], files["penalty"], files["meta"])
    tag = files["meta"].get("tag") or files["meta"].get("versions", {}).get("placer", "?")
    return LoadedModel(model, "default", f"default@{tag}", "default", None)
