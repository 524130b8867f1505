"""The store's queries, by area: what the rest of placer asks of the store, by name.

Callers hand in an open session (:meth:`placer.store.Store.session`, one transaction) and
get rows or plain values back; the SQL and the ORM stay inside :mod:`placer.store`
(docs/architecture.md). One module per area: :mod:`.hosts` (hosts, host models),
:mod:`.runs` (runs, applications, sites, objects, object metrics, deep-mode site
statistics), :mod:`.labels` (experiments, labels, trained models, plans and their
decisions), :mod:`.pipelines` (pipelines, stages, pipeline runs, stage metrics, tuning
studies), :mod:`.daemon` (daemon jobs and events); :mod:`.common` holds the race-free,
batched insert-unless-exists they share.
"""
