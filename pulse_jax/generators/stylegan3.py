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
