"""GPU benchmark: a random-weight Qwen2.5-0.5B-shaped model on the transformers engine."""
