"""StyleGAN2 and StyleGAN2-ADA (NVIDIA's networks_stylegan2.py): networks in
`pulse_jax.nets.stylegan2`; name tables in `weights_convert/tables/stylegan2.py`.

Parts: 'synthesis', 'mapping' and 'gaussian_fit' {'mean', 'std'} [w_dim] (the prior, fitted at
conversion: `generators.prior`). Noise layers: one per synthesis conv (17 at 1024 px),
unit-variance maps scaled by each layer's learned noise_strength, as NVIDIA's; without noise
arrays a render uses the model's own noise_const maps (NVIDIA's noise_mode='const').
Everything runs in float32 (the pickles' fp16 layers included, as NVIDIA's code on the CPU).
"""
from __future__ import annotations

import jax.numpy as jnp

from pulse_jax.nets import stylegan2 as net
from pulse_jax.generators.nvidia import NvidiaFamily


class StyleGAN2(NvidiaFamily):
  kind = "stylegan2"
  net = net
  uses_noise_options = True

  def config_from_dict(self, d):
    return net.Stylegan2Config.from_dict(d)

  def noise_shapes(self, config):
    return tuple(tuple(s) for s in net.noise_shapes(config)) if config.use_noise else ()

  def search_defaults(self, config) -> dict:
    """The reference's noise defaults mapped onto this architecture: it zeroes the noise of
    the last (1024 px) conv, v1's layer 17 of 18; StyleGAN2 has 2 log2(res) - 3 noise layers
    (17 at 1024, 0..16), so the LAST one here. The first 5 stay trainable (4x4 to 16x16, as
    v1's), fewer when the model has fewer."""
    n = len(self.noise_shapes(config))
    if not n:  # use_noise=False: the noise options do not apply
      return {}
    out = {"bad_noise_layers": str(n - 1)}
    if n < 5:
      out["num_trainable_noise_layers"] = n
    return out

  def synthesize(self, prepared, config, ws, noise, dtype, remat):
    noise = list(noise) if noise else None
    return net.synthesize(prepared["synthesis"], config, ws.astype(jnp.float32), noise=noise,
                          noise_mode="none" if noise is None else "const")

  def ilo_layers(self, config):
    """After each synthesis block but the last: 'b4', 'b8', .. 'b<res/2>'; the activation is
    {'x': features [N, r, r, C_r], 'img': the RGB skip sum so far [N, r, r, img_channels]
    ('skip' architecture only)}, NHWC float32."""
    return net.cut_points(config)

  def ilo_default_layers(self, config):
    """'b4', 'b8', 'b16' (fewer for a smaller model): ILO's own setting (its
    configs/config.yaml: steps [50, 50, 25, 25], the latent then cuts after rosinality's
    4, 8 and 16 px blocks). Later cuts leave the search more layers free to fit the
    measurements with images far from the generator's range."""
    return net.cut_points(config)[:3]

  def synthesize_until(self, prepared, config, ws, noise, dtype, remat, layer):
    noise = list(noise) if noise else None
    return net.synthesize_until(prepared["synthesis"], config, ws.astype(jnp.float32), layer,
                                noise=noise, noise_mode="none" if noise is None else "const")

  def synthesize_from(self, prepared, config, ws, noise, dtype, remat, layer, activation,
                      until=None):
    noise = list(noise) if noise else None
    return net.synthesize_from(prepared["synthesis"], config, ws.astype(jnp.float32), layer,
                               activation, noise=noise,
                               noise_mode="none" if noise is None else "const", until=until)

  def const_noise(self, params, config, batch):
    return net.const_noise(params, config, batch) if config.use_noise else None

