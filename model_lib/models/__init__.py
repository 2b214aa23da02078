"""Linen models, registered by name. Importing this package registers every model."""

from model_lib.models import cnn, lstm, mlp, transformer, vit  # noqa: F401  (registration side effect)
from model_lib.models.registry import MODELS, build_model

__all__ = ["MODELS", "build_model"]
