"""The PULSE latent prior: a Gaussian fit of the mapping network's output.

(StyleGAN2/3 fit the last mapping layer's pre-activation instead, with `fit_moments`: see
their families in `pulse_jax.generators`.)

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

from pulse_jax.nets import ops as layers
from pulse_jax.nets.stylegan1 import MappingNetwork, StyleGANConfig

FIT_SLOPE = 5.0  # LeakyReLU(5): the inverse of LeakyReLU(0.2)


@functools.partial(jax.jit, static_argnames=("features", "z_dim", "chunk"))
def _chunk_moments(features, params, key, z_dim: int, chunk: int):
  y = features(params, jax.random.normal(key, (chunk, z_dim), jnp.float32))
  mean = jnp.mean(y, axis=0)
  m2 = jnp.sum(jnp.square(y - mean), axis=0)
  return mean, m2


def fit_moments(features: Callable, params, z_dim: int, *, num_samples: int = 1_000_000,
                seed: int = 0, chunk: int = 8192,
                progress: Callable[[int, int], None] | None = None) -> dict:
  """{'mean': [D] float32, 'std': [D] float32} of `features(params, z)` [chunk, D] over
  `num_samples` z ~ N(0, I) [chunk, z_dim] (seeded; unbiased std, as torch.std). `features`
  must be hashable (a module-level function or a functools.partial of one): it is static."""
  if num_samples < 2:
    raise ValueError(f"num_samples must be >= 2, got {num_samples}.")
  chunk = min(chunk, num_samples)
  key = jax.random.key(seed)
  n_total, mean, m2 = 0, 0.0, 0.0
  done = 0
  while done < num_samples:
    size = min(chunk, num_samples - done)
    key, sub = jax.random.split(key)
    # Always run full chunks (one compilation); drop the surplus of the last one.
    if size == chunk:
      c_mean, c_m2 = (np.asarray(a, np.float64)
                      for a in _chunk_moments(features, params, sub, z_dim, chunk))
    else:
      y = np.asarray(features(params, jax.random.normal(sub, (size, z_dim), jnp.float32)),
                     np.float64)
      c_mean, c_m2 = y.mean(0), ((y - y.mean(0)) ** 2).sum(0)
    n_new = n_total + size
    delta = c_mean - mean
    mean = mean + delta * size / n_new
    m2 = m2 + c_m2 + delta ** 2 * n_total * size / n_new
    n_total = done = n_new
    if progress is not None:
      progress(done, num_samples)
  std = np.sqrt(m2 / (n_total - 1))
  return {"mean": np.asarray(mean, np.float32), "std": np.asarray(std, np.float32)}


def _v1_features(config: StyleGANConfig, mapping_params, z):
  return layers.leaky_relu(MappingNetwork(config).apply({"params": mapping_params}, z), FIT_SLOPE)


def fit_gaussian(mapping_params, config: StyleGANConfig, *, num_samples: int = 1_000_000,
                 seed: int = 0, chunk: int = 8192,
                 progress: Callable[[int, int], None] | None = None) -> dict:
  """Returns {'mean': [D] float32, 'std': [D] float32} of LeakyReLU(5)(mapping(z))."""
  return fit_moments(functools.partial(_v1_features, config), mapping_params,
                     config.dlatent_size, num_samples=num_samples, seed=seed, chunk=chunk,
                     progress=progress)


def latent_to_w(x: jax.Array, fit: dict) -> jax.Array:
  """x: [..., L, D] standard normal -> w = LeakyReLU(0.2)(x * std + mean), same shape."""
  return layers.leaky_relu(x * fit["std"] + fit["mean"])
