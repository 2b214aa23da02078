"""model_lib: config-driven JAX/Flax training, from a laptop CPU to a pod."""

__version__ = "0.1.0"
