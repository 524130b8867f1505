"""The placer daemon: watches running jobs, senses, decides and acts continuously.

Pieces (docs/daemon.md): :mod:`config` (TOML + environment), :mod:`protocol` (JSON lines
over a 0600 Unix socket), :mod:`procs` (/proc facts and the attach permission rule),
:mod:`tail` (incremental shim-log reader), :mod:`migrate` (``move_pages(2)``, rate
limited), :mod:`perfcount` (perf software counters), :mod:`ingest` (idempotent batched
writes), :mod:`decide` (re-ranking and pipeline ask-and-tell), :mod:`service` (the loop),
:mod:`client` (what jobs and the CLI use to talk to it).
"""
