"""Orchestration: data, training, search, retraining, reports."""
