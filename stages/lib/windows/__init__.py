"""Sliding windows over long essays, mean pooling, and whole-essay batches (no truncation)."""
