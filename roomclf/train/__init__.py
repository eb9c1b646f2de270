"""Training: the fast.ai recipe, attribute heads, the tracked run, its report and the champion gate."""
