"""Pipeline probes and engine adapters (see ``collectors.pipeline.api`` for the contract)."""
