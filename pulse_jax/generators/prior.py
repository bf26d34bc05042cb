"""PULSE's latent prior, for every family that has one: a Gaussian fit of (a transform of)
the mapping network's output, and the map from the search variable x ~ N(0, I) to the styles.

StyleGAN v1 (the reference): mean and std (each [512]) of LeakyReLU(negative_slope=5)(mapping(z))
over 1,000,000 z ~ N(0, I) (`fit_gaussian`); the search maps x to
w = LeakyReLU(0.2)(x * std + mean), the inverse of that transform (`latent_to_w`).

NVIDIA's StyleGAN2/3: mean and std [w_dim] of the mapping network's last layer BEFORE its
activation (lrelu 0.2 with gain sqrt 2; `fit_pre_activation`); the search maps x to
ws = pre_to_w(x * std + mean) (`pre_activation_prior`). A conditional model (c_dim > 0) gets one
fit per class, with c = one-hot(class): 'mean' and 'std' are [c_dim, w_dim]; a search selects
its class's row (`generators.nvidia.NvidiaFamily.search_params`, `pulse_jax.run --class_index`).

Both fits (`fit_moments`) draw and map the samples in jit-compiled chunks; per-chunk mean and
sum of squared deviations are merged on the host in float64 (Chan et al.), and std is the
unbiased estimate, as torch.std.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.nets import ops
from pulse_jax.nets.stylegan1 import MappingNetwork, StyleGANConfig

# ----------------------------------------------------------------------------- the fit

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


# ----------------------------------------------------------------------------- StyleGAN v1


def _v1_features(config: StyleGANConfig, mapping_params, z):
  return ops.leaky_relu(MappingNetwork(config).apply({"params": mapping_params}, z), FIT_SLOPE)


def fit_gaussian(mapping_params, config: StyleGANConfig, *, num_samples: int = 1_000_000,
                 seed: int = 0, chunk: int = 8192,
                 progress: Callable[[int, int], None] | None = None) -> dict:
  """Returns {'mean': [D] float32, 'std': [D] float32} of LeakyReLU(5)(mapping(z))."""
  return fit_moments(functools.partial(_v1_features, config), mapping_params,
                     config.dlatent_size, num_samples=num_samples, seed=seed, chunk=chunk,
                     progress=progress)


def latent_to_w(x: jax.Array, fit: dict) -> jax.Array:
  """x: [..., L, D] standard normal -> w = LeakyReLU(0.2)(x * std + mean), same shape."""
  return ops.leaky_relu(x * fit["std"] + fit["mean"])


# ----------------------------------------------------------------------------- NVIDIA StyleGAN2/3


def _pre_activation_features(pre_activation, config, class_index, params, z):
  return pre_activation({"mapping": params}, config, z, one_hot(config, z.shape[0], class_index))


def fit_pre_activation(module, mapping_params, config, *, num_samples: int, seed: int,
                       progress=None, class_index: int | None = None) -> dict:
  """{'mean', 'std'} [w_dim] of `module.mapping_pre_activation` over seeded z ~ N(0, I)
  (with c = one-hot(class_index) for a conditional model, where it is required)."""
  feats = functools.partial(_pre_activation_features, module.mapping_pre_activation, config,
                            class_index)
  return fit_moments(feats, mapping_params, config.z_dim, num_samples=num_samples, seed=seed,
                     progress=progress)


def fit_pre_activation_prior(module, mapping_params, config, *, num_samples: int, seed: int,
                             progress=None) -> dict:
  """The 'gaussian_fit' part {'mean', 'std'} of `module`'s network: [w_dim] each; for a
  conditional model one fit per class (same z draws for each), stacked [c_dim, w_dim].
  `progress(done, total)` counts samples over all classes."""
  fit = functools.partial(fit_pre_activation, module, mapping_params, config,
                          num_samples=num_samples, seed=seed)
  if not config.c_dim:
    return fit(progress=progress)
  fits = []
  for k in range(config.c_dim):
    step = None if progress is None else (
        lambda done, total, k=k: progress(k * total + done, config.c_dim * total))
    fits.append(fit(progress=step, class_index=k))
  return {name: np.stack([f[name] for f in fits]) for name in ("mean", "std")}


def pre_activation_prior(module, params: dict, x):
  """x [N, l, w_dim] standard normal -> ws [N, l, w_dim]."""
  fit = params["gaussian_fit"]
  if fit["mean"].ndim != 1:
    raise ValueError("a conditional model's prior holds one fit per class: select the class "
                     "first (Generator.search_params / --class_index).")
  return module.pre_to_w(x * fit["std"] + fit["mean"])


def check_class(config, class_index) -> int:
  """The class index of a conditional model, checked (ValueError naming the classes)."""
  if class_index is None or not 0 <= int(class_index) < config.c_dim:
    raise ValueError(f"this model is conditional with {config.c_dim} classes: pass its class "
                     f"with --class_index in 0..{config.c_dim - 1} (got {class_index!r}).")
  return int(class_index)


def one_hot(config, batch: int, class_index):
  """c = one-hot(class_index) [batch, c_dim] float32 for a conditional model (the index
  checked); None for an unconditional one, where `class_index` must be None."""
  if not config.c_dim:
    if class_index is not None:
      raise ValueError("--class_index given, but this model is unconditional (c_dim=0).")
    return None
  check_class(config, class_index)
  return jnp.broadcast_to(jnp.eye(config.c_dim)[int(class_index)], (batch, config.c_dim))
