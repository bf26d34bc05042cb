"""StyleGAN v1 synthesis and mapping networks in Flax (linen).

Matches the PULSE reference (a PyTorch port of NVIDIA's StyleGAN) exactly:
equalised learning rate, learned constant input, per-pixel noise with a
per-channel weight, LeakyReLU(0.2), instance norm, style modulation, nearest
2x up-sampling + 3x3 conv below 128 px and the fused transposed conv from 128 px
up, the [1,2,1] blur, and a 1x1 to-RGB conv at the last block.

Public tensors are NCHW as in the reference; activations are NHWC inside.

Parameter tree of `SynthesisNetwork` (C_i = channels of layer i, HWIO kernels):
  block_b (b = 0 .. log2(res) - 2), holding layers i = 2b and 2b + 1:
    const [1, 4, 4, C_0]                       (block_0 only)
    conv_i {kernel [3, 3, C_in, C_i]}          (every layer but 0)
    layer_i {bias [C_i], noise_weight [C_i], style_kernel [D, 2 C_i], style_bias [2 C_i]}
  torgb_kernel [1, 1, C_last, num_channels], torgb_bias [num_channels]
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax import layers

FUSED_MIN_RESOLUTION = 128  # output resolution from which up-sampling is a fused transposed conv


@dataclasses.dataclass(frozen=True)
class StyleGANConfig:
  """Static architecture of a StyleGAN v1 generator (the reference's names and defaults)."""
  resolution: int = 1024
  fmap_base: int = 8192
  fmap_decay: float = 1.0
  fmap_max: int = 512
  dlatent_size: int = 512
  num_channels: int = 3
  mapping_layers: int = 8
  mapping_lrmul: float = 0.01
  # torch.nn.InstanceNorm2d's eps, as the PULSE reference uses; NVIDIA's TF code uses 1e-8.
  instance_norm_eps: float = 1e-5

  def __post_init__(self):
    log2 = int(round(math.log2(self.resolution))) if self.resolution > 0 else 0
    if self.resolution < 4 or 2 ** log2 != self.resolution or self.resolution > 4096:
      raise ValueError(
          f"StyleGAN resolution must be a power of two in 4..4096, got {self.resolution}.")
    if self.fmap_base < 1 or self.fmap_max < 1 or self.dlatent_size < 1:
      raise ValueError(f"fmap_base, fmap_max and dlatent_size must be positive: {self}.")

  @property
  def resolution_log2(self) -> int:
    return int(round(math.log2(self.resolution)))

  @property
  def num_layers(self) -> int:
    """Number of style inputs / noise maps (18 at 1024)."""
    return 2 * self.resolution_log2 - 2

  def stage_channels(self, stage: int) -> int:
    return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

  def layer_channels(self, layer: int) -> int:
    """Output channels of layer `layer` (0-based): nf(res - 1) with res = layer // 2 + 2."""
    return self.stage_channels(layer // 2 + 1)

  def layer_resolution(self, layer: int) -> int:
    return 2 ** (layer // 2 + 2)

  def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
    """Per-layer noise shape without the batch dim: (1, r, r)."""
    return tuple((1, self.layer_resolution(i), self.layer_resolution(i))
                 for i in range(self.num_layers))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: dict) -> "StyleGANConfig":
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"Unknown StyleGANConfig fields {sorted(unknown)}; valid: {sorted(names)}.")
    return cls(**d)


class _StyleLayer(nn.Module):
  """Epilogue of one layer: + bias, + noise, LeakyReLU, instance norm, style modulation."""
  channels: int
  dlatent_size: int
  instance_norm_eps: float
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, dlatent, noise):
    """x: [B, H, W, C]; dlatent: [B, D]; noise: [B, 1, H, W] (NCHW, as the reference)."""
    c, d = self.channels, self.dlatent_size
    bias = self.param("bias", nn.initializers.zeros, (c,))
    noise_weight = self.param("noise_weight", nn.initializers.zeros, (c,))
    style_kernel = self.param("style_kernel", nn.initializers.normal(1.0), (d, 2 * c))
    style_bias = self.param("style_bias", nn.initializers.zeros, (2 * c,))
    x = x + bias.astype(self.dtype)
    noise_nhwc = jnp.transpose(noise, (0, 2, 3, 1)).astype(self.dtype)
    x = x + noise_weight.astype(self.dtype) * noise_nhwc
    x = layers.leaky_relu(x)
    x = layers.instance_norm(x, self.instance_norm_eps)
    w = style_kernel * layers.he_coefficient(d, gain=1.0)
    style = jnp.dot(dlatent.astype(jnp.float32), w) + style_bias  # [B, 2C]
    scale = (style[:, :c] + 1.0).astype(self.dtype)[:, None, None, :]
    shift = style[:, c:].astype(self.dtype)[:, None, None, :]
    return x * scale + shift


class _Conv(nn.Module):
  """Equalised-LR conv (optionally with 2x up-sampling); no bias (see _StyleLayer)."""
  in_channels: int
  out_channels: int
  kernel_size: int = 3
  upsample: str = "none"  # none | nearest | fused
  gain: float = math.sqrt(2.0)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k = self.kernel_size
    kernel = self.param("kernel", nn.initializers.normal(1.0),
                        (k, k, self.in_channels, self.out_channels))
    kernel = (kernel * layers.he_coefficient(self.in_channels * k * k, self.gain)).astype(self.dtype)
    if self.upsample == "none":
      x = layers.conv2d(x, kernel)
    else:
      x = layers.upsample_conv2d(x, kernel, self.upsample)
    if self.upsample != "none":
      x = layers.blur_121(x)
    return x


class _Block(nn.Module):
  """One resolution of the synthesis network: two layers (indices 2*res_idx, 2*res_idx + 1)."""
  config: StyleGANConfig
  block: int  # 0 for 4x4, 1 for 8x8, ...
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, dlatents, noise0, noise1):
    cfg = self.config
    i0, i1 = 2 * self.block, 2 * self.block + 1
    c = cfg.layer_channels(i0)
    epi = lambda i: _StyleLayer(c, cfg.dlatent_size, cfg.instance_norm_eps, self.dtype,
                                name=f"layer_{i}")
    if self.block == 0:
      const = self.param("const", nn.initializers.ones, (1, 4, 4, c))
      x = jnp.broadcast_to(const.astype(self.dtype), (dlatents.shape[0], 4, 4, c))
    else:
      res = cfg.layer_resolution(i0)
      mode = "fused" if res >= FUSED_MIN_RESOLUTION else "nearest"
      x = _Conv(x.shape[-1], c, upsample=mode, dtype=self.dtype, name=f"conv_{i0}")(x)
    x = epi(i0)(x, dlatents[:, i0], noise0)
    x = _Conv(c, c, dtype=self.dtype, name=f"conv_{i1}")(x)
    x = epi(i1)(x, dlatents[:, i1], noise1)
    return x


class SynthesisNetwork(nn.Module):
  """G_synthesis: dlatents [B, L, D] and L noise maps [B, 1, r_i, r_i] -> images [B, C, H, W].

  `dtype` is the compute dtype (float32 or bfloat16; norms and styles stay float32).
  `remat` rematerialises each block in the backward pass (less memory, ~30% more compute).
  """
  config: StyleGANConfig
  dtype: jnp.dtype = jnp.float32
  remat: bool = False

  @nn.compact
  def __call__(self, dlatents: jax.Array, noise: Sequence[jax.Array]) -> jax.Array:
    cfg = self.config
    if dlatents.ndim != 3 or dlatents.shape[1:] != (cfg.num_layers, cfg.dlatent_size):
      raise ValueError(f"dlatents must be [B, {cfg.num_layers}, {cfg.dlatent_size}], "
                       f"got {dlatents.shape}.")
    if len(noise) != cfg.num_layers:
      raise ValueError(f"Expected {cfg.num_layers} noise maps, got {len(noise)}.")
    block_cls = nn.remat(_Block) if self.remat else _Block
    x = None
    for b in range(cfg.resolution_log2 - 1):
      x = block_cls(cfg, b, self.dtype, name=f"block_{b}")(x, dlatents, noise[2 * b], noise[2 * b + 1])
    c_last = x.shape[-1]
    torgb_kernel = self.param("torgb_kernel", nn.initializers.normal(1.0),
                              (1, 1, c_last, cfg.num_channels))
    torgb_bias = self.param("torgb_bias", nn.initializers.zeros, (cfg.num_channels,))
    w = (torgb_kernel * layers.he_coefficient(c_last, gain=1.0)).astype(self.dtype)
    rgb = layers.conv2d(x, w).astype(jnp.float32) + torgb_bias
    return jnp.transpose(rgb, (0, 3, 1, 2))


class MappingNetwork(nn.Module):
  """G_mapping: z [B, 512] -> w [B, D]. Pixel norm, then 8 dense layers with lrmul 0.01."""
  config: StyleGANConfig

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    cfg = self.config
    x = layers.pixel_norm(z.astype(jnp.float32))
    for i in range(cfg.mapping_layers):
      fan_in = x.shape[-1]
      kernel = self.param(f"dense{i}_kernel", nn.initializers.normal(1.0 / cfg.mapping_lrmul),
                          (fan_in, cfg.dlatent_size))
      bias = self.param(f"dense{i}_bias", nn.initializers.zeros, (cfg.dlatent_size,))
      x = jnp.dot(x, kernel * layers.he_coefficient(fan_in, lrmul=cfg.mapping_lrmul))
      x = layers.leaky_relu(x + bias * cfg.mapping_lrmul)
    return x


def zero_noise(config: StyleGANConfig, batch: int) -> list[jax.Array]:
  """All-zero noise maps: [batch, 1, r_i, r_i] float32 for every layer."""
  return [jnp.zeros((batch,) + s, jnp.float32) for s in config.noise_shapes()]


def synthesis_param_shapes(config: StyleGANConfig) -> dict:
  """Abstract parameter tree (jax.ShapeDtypeStruct leaves) without allocating anything."""
  net = SynthesisNetwork(config)
  dl = jax.ShapeDtypeStruct((1, config.num_layers, config.dlatent_size), jnp.float32)
  noise = [jax.ShapeDtypeStruct((1,) + s, jnp.float32) for s in config.noise_shapes()]
  return jax.eval_shape(net.init, jax.random.key(0), dl, noise)["params"]


def mapping_param_shapes(config: StyleGANConfig) -> dict:
  net = MappingNetwork(config)
  z = jax.ShapeDtypeStruct((1, config.dlatent_size), jnp.float32)
  return jax.eval_shape(net.init, jax.random.key(0), z)["params"]
