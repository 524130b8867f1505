"""Example input pipelines that do real work on data the project generates offline.

``registry()`` maps each example name to a factory returning its ``PipelineDef``; data is
generated on first use under ``$PLACER_PIPELINE_DATA`` (default ``<data dir>/pipelines``)
at the size ``$PLACER_PIPELINE_SIZE`` (``small`` or ``tiny``) and reused after.
"""

from __future__ import annotations

from collections.abc import Callable

from placer.contracts.pipeline import PipelineDef

Factory = Callable[[], PipelineDef]


def _spec_factory(module: str, engine: str) -> Factory:
    def make() -> PipelineDef:
        import importlib

        from placer.collectors.pipeline.adapters import pipeline_def

        mod = importlib.import_module(f"examples.pipelines.{module}")
        return pipeline_def(mod.spec(), engine)

    make.__doc__ = f"{module} pipeline on {engine}"
    return make


def _tf_factory(which: str, autotune: bool) -> Factory:
    def make() -> PipelineDef:
        from placer.collectors.pipeline.adapters.tfdata import tf_pipeline_def
        from examples.pipelines import tf_pipelines

        spec = getattr(tf_pipelines, f"{which}_spec")()
        return tf_pipeline_def(spec, autotune=autotune)

    make.__doc__ = f"{which} pipeline on tf.data" + (" (AUTOTUNE)" if autotune else "")
    return make


def registry() -> dict[str, Factory]:
    """Every example pipeline by name: ``<images|text|tabular|remote>-<engine>``."""
    out: dict[str, Factory] = {}
    for module in ("images", "text", "tabular", "remote"):
        for engine in ("python", "torchdata", "dataloader"):
            out[f"{module}-{engine}"] = _spec_factory(module, engine)
    for which in ("images", "tabular"):
        out[f"{which}-tfdata"] = _tf_factory(which, autotune=False)
        out[f"{which}-tfdata-autotune"] = _tf_factory(which, autotune=True)
    return out
