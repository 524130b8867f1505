"""Engine adapters: build a probed pipeline from a spec or a config."""
