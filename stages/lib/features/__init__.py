"""Handcrafted linguistic features and the feature store the feature-based arms read."""
