"""The PULSE latent prior: a Gaussian fit of the mapping network's output.

The reference fits mean and std (each [512]) of LeakyReLU(negative_slope=5)(mapping(z))
over 1,000,000 z ~ N(0, I). During the search a standard-normal latent x is
mapped to w = LeakyReLU(0.2)(x * std + mean), the inverse of that transform.

Here the samples are drawn and mapped in jit-compiled chunks; per-chunk mean and
sum of squared deviations are merged on the host in float64 (Chan et al.), and
std is the unbiased estimate, as torch.std.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import layers
from pulse_jax.stylegan import MappingNetwork, StyleGANConfig

FIT_SLOPE = 5.0  # LeakyReLU(5): the inverse of LeakyReLU(0.2)


@functools.partial(jax.jit, static_argnames=("config", "chunk"))
def _chunk_moments(mapping_params, key, config: StyleGANConfig, chunk: int):
  z = jax.random.normal(key, (chunk, config.dlatent_size), jnp.float32)
  w = MappingNetwork(config).apply({"params": mapping_params}, z)
  y = layers.leaky_relu(w, FIT_SLOPE)
  mean = jnp.mean(y, axis=0)
  m2 = jnp.sum(jnp.square(y - mean), axis=0)
  return mean, m2


def fit_gaussian(mapping_params, config: StyleGANConfig, *, num_samples: int = 1_000_000,
                 seed: int = 0, chunk: int = 8192,
                 progress: Callable[[int, int], None] | None = None) -> dict:
  """Returns {'mean': [D] float32, 'std': [D] float32} of LeakyReLU(5)(mapping(z))."""
  if num_samples < 2:
    raise ValueError(f"num_samples must be >= 2, got {num_samples}.")
  chunk = min(chunk, num_samples)
  key = jax.random.key(seed)
  n_total, mean, m2 = 0, np.zeros(config.dlatent_size), np.zeros(config.dlatent_size)
  done = 0
  while done < num_samples:
    size = min(chunk, num_samples - done)
    key, sub = jax.random.split(key)
    # Always run full chunks (one compilation); drop the surplus of the last one.
    if size == chunk:
      c_mean, c_m2 = (np.asarray(a, np.float64) for a in _chunk_moments(mapping_params, sub, config, chunk))
    else:
      z = jax.random.normal(sub, (size, config.dlatent_size), jnp.float32)
      y = layers.leaky_relu(MappingNetwork(config).apply({"params": mapping_params}, z), FIT_SLOPE)
      y = np.asarray(y, np.float64)
      c_mean, c_m2 = y.mean(0), ((y - y.mean(0)) ** 2).sum(0)
    n_new = n_total + size
    delta = c_mean - mean
    mean = mean + delta * size / n_new
    m2 = m2 + c_m2 + delta ** 2 * n_total * size / n_new
    n_total = done = n_new
    if progress is not None:
      progress(done, num_samples)
  std = np.sqrt(m2 / (n_total - 1))
  return {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}


def latent_to_w(x: jax.Array, fit: dict) -> jax.Array:
  """x: [..., L, D] standard normal -> w = LeakyReLU(0.2)(x * std + mean), same shape."""
  return layers.leaky_relu(x * fit["std"] + fit["mean"])
