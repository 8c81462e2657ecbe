"""The transformer arms: budget config, model, objectives, training loop, precision and device setup."""
