"""Object profiling: run a program with the allocation shim and store its objects.

Pieces, each usable alone: :mod:`.elf` (what a binary is), :mod:`.runner` (run it with the
shim, perf or valgrind, forward signals), :mod:`.intervals` (map address samples to
objects and chunks), :mod:`.perf` (perf record / perf mem output), :mod:`.dhat` (deep
mode), :mod:`.symbolize` (``file:line`` chains, cached per build-id), :mod:`.pyrunner`
(Python call sites) and :mod:`.ingest` (one transaction into the store).
"""
