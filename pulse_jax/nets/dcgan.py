"""The 64x64 DCGAN face generator of the PyPI wheel `gan-face-generate`, in Flax.

Architecture (PyTorch DCGAN tutorial, nz=100, ngf=64, nc=3): five stride-2
transposed convs (the first from 1x1 to 4x4 with stride 1, no padding), each but
the last followed by BatchNorm (inference mode: running statistics) and ReLU,
then tanh. Output in [-1, 1], NCHW.

Parameter tree (HWIO kernels as a forward conv of the dilated input would use
them, i.e. already spatially flipped from torch's ConvTranspose2d layout):
  convt_i {kernel [4, 4, C_in, C_out]}             i = 0..4
  bn_i {scale [C], bias [C], mean [C], var [C]}    i = 0..3
"""
from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class DCGANConfig:
  """Static architecture of the DCGAN generator (the wheel's values by default)."""
  nz: int = 100
  ngf: int = 64
  nc: int = 3
  bn_eps: float = 1e-5

  @property
  def resolution(self) -> int:
    return 64

  def channels(self) -> tuple[int, ...]:
    """Channels after each transposed conv: (8 ngf, 4 ngf, 2 ngf, ngf, nc)."""
    g = self.ngf
    return (8 * g, 4 * g, 2 * g, g, self.nc)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "DCGANConfig":
    return cls(**d)


def _conv_transpose(x: jax.Array, kernel: jax.Array, stride: int, padding: int) -> jax.Array:
  """torch ConvTranspose2d semantics with a pre-flipped HWIO kernel. x: [B, H, W, Cin]."""
  k = kernel.shape[0]
  p = k - 1 - padding
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), window_strides=(1, 1), padding=((p, p), (p, p)),
      lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"))


class DCGANGenerator(nn.Module):
  """z [B, nz] (or [B, nz, 1, 1], or [B, 1, nz]) -> image [B, nc, 64, 64] in [-1, 1]."""
  config: DCGANConfig = DCGANConfig()

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    cfg = self.config
    x = z.reshape(z.shape[0], 1, 1, cfg.nz).astype(jnp.promote_types(z.dtype, jnp.float32))
    c_in = cfg.nz
    for i, c_out in enumerate(cfg.channels()):
      kernel = self.param(f"convt_{i}", lambda k, s: {"kernel": 0.02 * jax.random.normal(k, s)},
                          (4, 4, c_in, c_out))["kernel"]
      x = _conv_transpose(x, kernel, stride=1 if i == 0 else 2, padding=0 if i == 0 else 1)
      if i < 4:
        bn = self.param(f"bn_{i}", lambda k, c: {
            "scale": jnp.ones((c,)), "bias": jnp.zeros((c,)),
            "mean": jnp.zeros((c,)), "var": jnp.ones((c,))}, c_out)
        x = (x - bn["mean"]) * jax.lax.rsqrt(bn["var"] + cfg.bn_eps) * bn["scale"] + bn["bias"]
        x = jax.nn.relu(x)
      c_in = c_out
    return jnp.transpose(jnp.tanh(x), (0, 3, 1, 2))


def dcgan_param_shapes(config: DCGANConfig = DCGANConfig()) -> dict:
  z = jax.ShapeDtypeStruct((1, config.nz), jnp.float32)
  return jax.eval_shape(DCGANGenerator(config).init, jax.random.key(0), z)["params"]
