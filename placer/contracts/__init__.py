"""Base-layer types and helpers shared by sense and decide."""
