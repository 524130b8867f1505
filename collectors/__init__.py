"""Collectors: sense what programs do (object profiling, access sampling, pipeline probes)."""
