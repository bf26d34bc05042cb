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

from pulse_jax.nets import stages as stages_lib


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


def _block_stage(params: dict, config: DCGANConfig, i: int) -> stages_lib.Stage:
  """Transposed conv i (+ BatchNorm and ReLU but for the last) as a stage: [B, r/2, r/2, C]
  (or [B, 1, 1, nz]) -> [B, r, r, C_i], r = 4 * 2^i, NHWC."""

  def run(x):
    x = _conv_transpose(x, params[f"convt_{i}"]["kernel"], stride=1 if i == 0 else 2,
                        padding=0 if i == 0 else 1)
    if i < 4:
      bn = params[f"bn_{i}"]
      x = (x - bn["mean"]) * jax.lax.rsqrt(bn["var"] + config.bn_eps) * bn["scale"] + bn["bias"]
      x = jax.nn.relu(x)
    return x

  return stages_lib.Stage(f"b{4 * 2 ** i}", run)


def _stages(params: dict, config: DCGANConfig) -> list[stages_lib.Stage]:
  """The generator as stages 'b4', 'b8', 'b16', 'b32', 'b64' (one per transposed conv; the
  state after each is its activation [B, r, r, C], NHWC, float32 for float32 inputs)."""
  return [_block_stage(params, config, i) for i in range(len(config.channels()))]


def _latent(z: jax.Array, config: DCGANConfig) -> jax.Array:
  """z [B, nz] (or [B, nz, 1, 1], or [B, 1, nz]) -> [B, 1, 1, nz], at least float32."""
  return z.reshape(z.shape[0], 1, 1, config.nz).astype(jnp.promote_types(z.dtype, jnp.float32))


def _image(x: jax.Array) -> jax.Array:
  """The last conv's output [B, 64, 64, nc] -> images [B, nc, 64, 64] in [-1, 1]."""
  return jnp.transpose(jnp.tanh(x), (0, 3, 1, 2))


def cut_points(config: DCGANConfig = DCGANConfig()) -> tuple[str, ...]:
  """Where the generator can be cut: after each block but the last, 'b4', 'b8', 'b16', 'b32'
  (named by their output resolution)."""
  return tuple(stage.name for stage in _stages({}, config)[:-1])


def synthesize(params: dict, config: DCGANConfig, z: jax.Array) -> jax.Array:
  """params: the 'dcgan' part; z [B, nz] (or [B, nz, 1, 1], or [B, 1, nz]) -> images
  [B, nc, 64, 64] in [-1, 1]."""
  return _image(stages_lib.run_stages(_stages(params, config), _latent(z, config)))


def synthesize_until(params: dict, config: DCGANConfig, z: jax.Array, layer: str) -> jax.Array:
  """`synthesize` up to and including block `layer` (one of `cut_points(config)`): its
  activation [B, r, r, C] (NHWC)."""
  stages_lib.check_cut(layer, cut_points(config), "the DCGAN")
  return stages_lib.run_stages(_stages(params, config), _latent(z, config), until=layer)


def synthesize_from(params: dict, config: DCGANConfig, layer: str,
                    activation: jax.Array, until: str | None = None) -> jax.Array:
  """The rest of `synthesize` after block `layer`, from its `activation` (as
  `synthesize_until` returns it) -> images [B, nc, 64, 64]. (No latent: the DCGAN's only
  input is consumed by the first block.) With `until` (a later cut point): that block's
  activation instead of the image."""
  stages_lib.check_cut(layer, cut_points(config), "the DCGAN")
  if until is not None:
    stages_lib.check_cut(until, cut_points(config), "the DCGAN")
    return stages_lib.run_stages(_stages(params, config), activation, after=layer, until=until)
  return _image(stages_lib.run_stages(_stages(params, config), activation, after=layer))


class DCGANGenerator(nn.Module):
  """z [B, nz] (or [B, nz, 1, 1], or [B, 1, nz]) -> image [B, nc, 64, 64] in [-1, 1]: the
  parameters of `synthesize` as a Flax module (for `init` and the shapes)."""
  config: DCGANConfig = DCGANConfig()

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    cfg = self.config
    params = {}
    c_in = cfg.nz
    for i, c_out in enumerate(cfg.channels()):
      params[f"convt_{i}"] = self.param(
          f"convt_{i}", lambda k, s: {"kernel": 0.02 * jax.random.normal(k, s)},
          (4, 4, c_in, c_out))
      if i < 4:
        params[f"bn_{i}"] = self.param(f"bn_{i}", lambda k, c: {
            "scale": jnp.ones((c,)), "bias": jnp.zeros((c,)),
            "mean": jnp.zeros((c,)), "var": jnp.ones((c,))}, c_out)
      c_in = c_out
    return synthesize(params, cfg, z)


def dcgan_param_shapes(config: DCGANConfig = DCGANConfig()) -> dict:
  z = jax.ShapeDtypeStruct((1, config.nz), jnp.float32)
  return jax.eval_shape(DCGANGenerator(config).init, jax.random.key(0), z)["params"]
