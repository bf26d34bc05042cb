"""PULSE's prior for NVIDIA's StyleGAN2/3: a Gaussian fit of the mapping network's last layer
BEFORE its activation (lrelu 0.2 with gain sqrt 2), the analogue of the reference's fit of
LeakyReLU(5)(w) for StyleGAN v1. The search variable x ~ N(0, I) becomes
ws = pre_to_w(x * std + mean)."""
from __future__ import annotations

import functools

from pulse_jax.gaussian_fit import fit_moments


def _features(pre_activation, config, params, z):
  return pre_activation({"mapping": params}, config, z)


def fit_pre_activation(module, mapping_params, config, *, num_samples: int, seed: int,
                       progress=None) -> dict:
  """{'mean', 'std'} [w_dim] of `module.mapping_pre_activation` over seeded z ~ N(0, I)."""
  if config.c_dim:
    raise ValueError(f"conditional model (c_dim={config.c_dim}): the PULSE prior is fitted for "
                     "unconditional models only; a class-conditional search is not supported.")
  feats = functools.partial(_features, module.mapping_pre_activation, config)
  return fit_moments(feats, mapping_params, config.z_dim, num_samples=num_samples, seed=seed,
                     progress=progress)


def prior(module, params: dict, x):
  """x [N, l, w_dim] standard normal -> ws [N, l, w_dim]."""
  fit = params["gaussian_fit"]
  return module.pre_to_w(x * fit["std"] + fit["mean"])
