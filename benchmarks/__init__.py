"""Side-by-side speed comparisons of model_lib with peer frameworks (`python -m tools.benchmark --suite=peers`)."""
