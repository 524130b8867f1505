"""Experiments: run programs to make placement labels (measured on a slow tier, else emulated)."""
