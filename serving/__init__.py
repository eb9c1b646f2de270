"""HTTP serving of the registered champion model."""
