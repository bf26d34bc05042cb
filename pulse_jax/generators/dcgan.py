"""The 64x64 DCGAN face generator (the built-in default): network in `pulse_jax.nets.dcgan`.

Its latent z [N, 1, nz] is the style input itself: no mapping, no noise, no W+ (GEOCROSS and
the noise options do not apply). Part: 'dcgan'.
"""
from __future__ import annotations

from pulse_jax.nets import dcgan
from pulse_jax.generators.base import Family


class DCGAN(Family):
  kind = "dcgan"
  required_parts = ("dcgan",)

  def config_from_dict(self, d):
    return dcgan.DCGANConfig.from_dict(d)

  def part_shapes(self, config, part):
    if part == "dcgan":
      return dcgan.dcgan_param_shapes(config)
    raise ValueError(f"Unknown part {part!r} for a {self.kind} generator.")

  def resolution(self, config):
    return config.resolution

  def num_channels(self, config):
    return config.nc

  def num_ws(self, config):
    return 1

  def w_dim(self, config):
    return config.nz

  def latent_layers(self, config, tile_latent):
    return 1

  def synthesize(self, prepared, config, ws, noise, dtype, remat):
    return dcgan.synthesize(prepared["dcgan"], config, ws.reshape(ws.shape[0], -1))

  def ilo_layers(self, config):
    """After each transposed-conv block but the last: 'b4' (4x4, 8 ngf channels), 'b8',
    'b16', 'b32' (activations NHWC)."""
    return dcgan.cut_points(config)

  def ilo_default_layers(self, config):
    """'b4', 'b8': the first two blocks (the projection of z to 4x4 and the first 2x
    up-sampling), as ILO starts early in StyleGAN2. With only five layers, a later cut
    leaves two or fewer convs after it, free to produce images far outside the DCGAN's
    range (ILO's l1 ball bounds the step, not where the layers after it can take it)."""
    return dcgan.cut_points(config)[:2]

  def synthesize_until(self, prepared, config, ws, noise, dtype, remat, layer):
    return dcgan.synthesize_until(prepared["dcgan"], config, ws.reshape(ws.shape[0], -1), layer)

  def synthesize_from(self, prepared, config, ws, noise, dtype, remat, layer, activation,
                      until=None):
    return dcgan.synthesize_from(prepared["dcgan"], config, layer, activation, until)

  def prior(self, params, config, x):
    return x

  def mapping(self, params, config, z, truncation_psi=1.0, class_index=None,
              truncation_cutoff=None):
    if truncation_psi != 1.0:
      raise ValueError("the DCGAN has no truncation (no mapping network).")
    if class_index is not None:
      raise ValueError("class_index given, but the DCGAN is unconditional.")
    return z.reshape(z.shape[0], 1, -1)
