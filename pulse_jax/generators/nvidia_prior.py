"""PULSE's prior for NVIDIA's StyleGAN2/3: a Gaussian fit of the mapping network's last layer
BEFORE its activation (lrelu 0.2 with gain sqrt 2), the analogue of the reference's fit of
LeakyReLU(5)(w) for StyleGAN v1. The search variable x ~ N(0, I) becomes
ws = pre_to_w(x * std + mean)."""
from __future__ import annotations

import functools

import jax.numpy as jnp

from pulse_jax.gaussian_fit import fit_moments
from pulse_jax.generators.base import Family


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


def one_hot(config, batch: int, class_index):
  if not config.c_dim:
    if class_index is not None:
      raise ValueError("--class_index given, but this model is unconditional (c_dim=0).")
    return None
  if class_index is None or not 0 <= int(class_index) < config.c_dim:
    raise ValueError(f"this model is conditional with {config.c_dim} classes: pass its class "
                     f"(render: --class_index) in 0..{config.c_dim - 1} (got {class_index!r}).")
  return jnp.broadcast_to(jnp.eye(config.c_dim)[int(class_index)], (batch, config.c_dim))


class NvidiaFamily(Family):
  """What StyleGAN2 and StyleGAN3 share (`net`: their network module): NVIDIA's config names,
  this prior, the (conditional) mapping."""
  net = None
  required_parts = ("synthesis", "gaussian_fit")
  has_wplus = True

  def resolution(self, config):
    return config.img_resolution

  def num_channels(self, config):
    return config.img_channels

  def num_ws(self, config):
    return config.num_ws

  def w_dim(self, config):
    return config.w_dim

  def prior(self, params, config, x):
    return prior(self.net, params, x)

  def fit_prior(self, params, config, *, num_samples, seed, progress=None):
    return fit_pre_activation(self.net, params["mapping"], config, num_samples=num_samples,
                              seed=seed, progress=progress)

  def num_classes(self, config):
    return config.c_dim

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    c = one_hot(config, z.shape[0], class_index)
    return self.net.mapping(params, config, z, c, truncation_psi=truncation_psi,
                            truncation_cutoff=truncation_cutoff)
