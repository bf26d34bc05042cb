"""StyleGAN v1 (the reference's FFHQ generator): networks in `pulse_jax.nets.stylegan1`.

Parts: 'synthesis' (required), 'gaussian_fit' {'mean', 'std'} [512] (required: the prior),
'mapping' and 'dlatent_avg' [512] (optional: render from z).
"""
from __future__ import annotations

import jax.numpy as jnp

from pulse_jax.nets import stylegan1
from pulse_jax.generators.prior import latent_to_w
from pulse_jax.generators.base import Family


class StyleGAN1(Family):
  kind = "stylegan"
  required_parts = ("synthesis", "gaussian_fit")
  has_wplus = True
  uses_noise_options = True
  supports_compute_dtype = True
  supports_remat = True

  def config_from_dict(self, d):
    return stylegan1.StyleGANConfig.from_dict(d)

  def part_shapes(self, config, part):
    d = (config.dlatent_size,)
    if part == "synthesis":
      return stylegan1.synthesis_param_shapes(config)
    if part == "mapping":
      return stylegan1.mapping_param_shapes(config)
    if part == "gaussian_fit":
      return {"mean": self.vector(d), "std": self.vector(d)}
    if part == "dlatent_avg":
      return self.vector(d)
    raise ValueError(f"Unknown part {part!r} for a {self.kind} generator.")

  def resolution(self, config):
    return config.resolution

  def num_channels(self, config):
    return config.num_channels

  def num_ws(self, config):
    return config.num_layers

  def w_dim(self, config):
    return config.dlatent_size

  def noise_shapes(self, config):
    return config.noise_shapes()

  def prepare(self, params, config, dtype):
    return {**params, "synthesis": stylegan1.prepare_synthesis(params["synthesis"], config, dtype)}

  def synthesize(self, prepared, config, ws, noise, dtype, remat):
    return stylegan1.synthesize(prepared["synthesis"], ws, list(noise), config, dtype, remat)

  def ilo_layers(self, config):
    """After each synthesis block: 'b4', 'b8', .. 'b<res>' (activation [N, r, r, C], NHWC,
    the compute dtype; after the last block it is the to-RGB conv's input)."""
    return stylegan1.cut_points(config)

  def ilo_default_layers(self, config):
    """'b4', 'b8', 'b16' (fewer for a smaller model): ILO's own setting for StyleGAN2 (its
    configs/config.yaml: steps [50, 50, 25, 25], the latent then cuts after the 4, 8 and
    16 px blocks), the same blocks here. Later cuts leave the search more layers free to fit
    the measurements with images far from the generator's range."""
    return stylegan1.cut_points(config)[:3]

  def synthesize_until(self, prepared, config, ws, noise, dtype, remat, layer):
    return stylegan1.synthesize_until(prepared["synthesis"], ws, list(noise), config, layer,
                                      dtype, remat)

  def synthesize_from(self, prepared, config, ws, noise, dtype, remat, layer, activation,
                      until=None):
    return stylegan1.synthesize_from(prepared["synthesis"], ws, list(noise), config, layer,
                                     activation, dtype, remat, until)

  def prior(self, params, config, x):
    return latent_to_w(x, params["gaussian_fit"])

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    if class_index is not None:
      raise ValueError("class_index given, but StyleGAN v1 models are unconditional.")
    if "mapping" not in params:
      return super().mapping(params, config, z, truncation_psi, class_index)
    w = stylegan1.MappingNetwork(config).apply({"params": params["mapping"]}, z)
    ws = jnp.broadcast_to(w[:, None], (w.shape[0], config.num_layers, w.shape[-1]))
    if truncation_psi == 1.0:
      return ws
    if "dlatent_avg" not in params:
      raise ValueError("truncation needs dlatent_avg, which these weights lack.")
    avg = params["dlatent_avg"]
    rows = jnp.arange(config.num_layers)[None, :, None] < (
        config.num_layers if truncation_cutoff is None else truncation_cutoff)
    return jnp.where(rows, avg + truncation_psi * (ws - avg), ws)
