"""Model compression: magnitude pruning, int8 quantization, knowledge distillation."""
