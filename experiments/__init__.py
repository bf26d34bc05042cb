"""Benchmarks of pulse-jax against the PyTorch reference (not part of the installed package)."""
