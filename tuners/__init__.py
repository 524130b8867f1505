"""Tuners: pipeline operational analysis and Optuna-based tuning."""
