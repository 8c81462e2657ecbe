"""Measurement tools that are not pipeline stages: the training benchmark and the run-equivalence check."""
