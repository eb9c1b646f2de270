"""The MLflow tracking store: one experiment per step and its UI."""
