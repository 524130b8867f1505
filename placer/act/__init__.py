"""Act layer: apply decisions to running programs (bind at allocation, migrate live pages)."""
