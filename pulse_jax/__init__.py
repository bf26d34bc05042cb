"""pulse-jax: PULSE (CVPR 2020) photo upsampling by latent-space search, in JAX/Flax."""

__version__ = "0.1.0"
