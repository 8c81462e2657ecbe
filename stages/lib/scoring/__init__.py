"""Metric definitions, grid calibration, the predictions contract and the evaluation of one arm."""
