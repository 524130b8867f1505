"""The placer daemon: watches running jobs, senses, decides and acts continuously.

Pieces (docs/daemon.md): :mod:`service` (the ``Daemon`` facade: wiring, job life cycle,
store), :mod:`server` (the 0600 Unix socket and its requests), :mod:`protocol` (JSON
lines), :mod:`loop` (signals and ticks), :mod:`job` (a job and its typed state
document), :mod:`sensors` (perf stat, perf mem, shim log, mappings; with :mod:`perfstat`,
:mod:`perfmem`, :mod:`tail`), :mod:`decide` (re-ranking and pipeline ask-and-tell),
:mod:`pipeline` (a pipeline job's reports), :mod:`telemetry` (counters, counted once)
and :mod:`metrics` (Prometheus), :mod:`ingest` (idempotent batched writes), :mod:`config`
(TOML + environment), :mod:`procs` (/proc facts and the attach permission rule),
:mod:`client` (what jobs and the CLI use to talk to it). Page migration is the act
layer's :mod:`placer.act.migrate`.
"""
