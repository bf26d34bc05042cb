"""StyleGAN3 -T and -R (NVIDIA's networks_stylegan3.py): networks in `pulse_jax.stylegan3`;
name table in `weights_convert/tables_stylegan3.py`.

Parts: 'synthesis', 'mapping' and 'gaussian_fit' {'mean', 'std'} [w_dim] (the prior, fitted at
conversion: `generators.nvidia_prior`). No noise inputs. Float32.
"""
from __future__ import annotations

import jax.numpy as jnp

from pulse_jax import stylegan3 as net
from pulse_jax.generators import nvidia_prior
from pulse_jax.generators.base import Family
from pulse_jax.generators.stylegan2 import _one_hot


class StyleGAN3(Family):
  kind = "stylegan3"
  required_parts = ("synthesis", "gaussian_fit")
  has_wplus = True

  def config_from_dict(self, d):
    return net.Stylegan3Config.from_dict(d)

  def part_shapes(self, config, part):
    if part == "gaussian_fit":
      return {"mean": self.vector((config.w_dim,)), "std": self.vector((config.w_dim,))}
    shapes = net.param_shapes(config)
    if part not in shapes:
      raise ValueError(f"Unknown part {part!r} for a {self.kind} generator; parts: "
                       f"{sorted(shapes) + ['gaussian_fit']}.")
    return shapes[part]

  def resolution(self, config):
    return config.img_resolution

  def num_channels(self, config):
    return config.img_channels

  def num_ws(self, config):
    return config.num_ws

  def w_dim(self, config):
    return config.w_dim

  def synthesize(self, prepared, config, ws, noise, dtype, remat):
    return net.synthesize(prepared, config, ws.astype(jnp.float32))

  def prior(self, params, config, x):
    return nvidia_prior.prior(net, params, x)

  def fit_prior(self, params, config, *, num_samples, seed, progress=None):
    return nvidia_prior.fit_pre_activation(net, params["mapping"], config,
                                           num_samples=num_samples, seed=seed, progress=progress)

  def num_classes(self, config):
    return config.c_dim

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    c = _one_hot(config, z.shape[0], class_index)
    return net.mapping(params, config, z, c, truncation_psi=truncation_psi,
                       truncation_cutoff=truncation_cutoff)
