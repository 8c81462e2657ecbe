"""Scoring new essays with a final model (`aes-gate score`): input checks, batched reading, the same
features and model the pipeline used, per-essay flags, atomic output with a provenance sidecar."""
