"""Explainability: gradient attributions, occlusion, attention maps, feature importance."""
