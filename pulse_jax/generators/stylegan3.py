"""StyleGAN3 -T and -R (NVIDIA's networks_stylegan3.py): networks in `pulse_jax.nets.stylegan3`;
name table in `weights_convert/tables/stylegan3.py`.

Parts: 'synthesis', 'mapping' and 'gaussian_fit' {'mean', 'std'} [w_dim] (the prior, fitted at
conversion: `generators.prior`). No noise inputs. Float32.
"""
from __future__ import annotations

import jax.numpy as jnp

from pulse_jax.nets import stylegan3 as net
from pulse_jax.generators.nvidia import NvidiaFamily


class StyleGAN3(NvidiaFamily):
  kind = "stylegan3"
  net = net

  def config_from_dict(self, d):
    return net.Stylegan3Config.from_dict(d)

  def synthesize(self, prepared, config, ws, noise, dtype, remat):
    return net.synthesize(prepared, config, ws.astype(jnp.float32))

  def ilo_layers(self, config):
    """After the Fourier 'input' and after each SynthesisLayer but the ToRGB one, NVIDIA's
    layer names 'L0_36_512' .. 'L13_1024_32' (at 1024; activation [N, size, size, C], NHWC
    float32, with the layer's margin)."""
    return net.cut_points(config)

  def ilo_default_layers(self, config):
    """The first four synthesis layers, L0 .. L3 (not the Fourier input, as ILO does not cut
    StyleGAN2 at its constant): at 1024 their output cutoffs, 2 to 8 cycles per image, span
    the band of StyleGAN2's default cuts 'b4', 'b8', 'b16' (Nyquist 2 to 8)."""
    return net.cut_points(config)[1:5]

  def synthesize_until(self, prepared, config, ws, noise, dtype, remat, layer):
    return net.synthesize_until(prepared, config, ws.astype(jnp.float32), layer)

  def synthesize_from(self, prepared, config, ws, noise, dtype, remat, layer, activation,
                      until=None):
    return net.synthesize_from(prepared, config, ws.astype(jnp.float32), layer, activation,
                               until)
