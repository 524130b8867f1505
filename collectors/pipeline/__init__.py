"""Pipeline probes and engine adapters (see ``placer.contracts.pipeline`` for the contract)."""
