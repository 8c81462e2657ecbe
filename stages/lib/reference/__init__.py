"""The reference arm (XGBoost on the feature store), shared by its CV stage and the final model."""
