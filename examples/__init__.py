"""Example workloads (C graph suite, memory microbenchmarks, Python embedding lookups).

``examples.build.examples_bin(name)`` builds on demand and returns a binary's path.
"""
