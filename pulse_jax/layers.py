"""Building blocks of StyleGAN v1, as pure functions on NHWC activations.

Every function here is a pure jnp function so that the networks built from them
are jit-able, differentiable and rematerialisable. Weights are stored unscaled
(as in the official TF and PyTorch checkpoints) and multiplied by their
equalised-learning-rate coefficient at run time.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

LRELU_SLOPE = 0.2


def he_coefficient(fan_in: int, gain: float = math.sqrt(2.0), lrmul: float = 1.0) -> float:
  """Run-time weight multiplier of the equalised learning rate: gain / sqrt(fan_in) * lrmul."""
  return gain / math.sqrt(fan_in) * lrmul


def leaky_relu(x: jax.Array, slope: float = LRELU_SLOPE) -> jax.Array:
  return jnp.where(x >= 0, x, x * slope)


def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'SAME' stride-1 convolution. x: [B, H, W, Cin]; kernel: [k, k, Cin, Cout] (HWIO)."""
  k = kernel.shape[0]
  pad = k // 2
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), window_strides=(1, 1),
      padding=((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def upscale_nearest_2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x up-sampling. x: [B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


def fused_upscale_conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """StyleGAN's fused 2x up-sampling + 3x3 conv (a stride-2 transposed conv).

  The 3x3 kernel is zero-padded to 5x5 and the four 4x4 windows are summed,
  then applied as a transposed convolution with stride 2 and padding 1, exactly
  as the official TF code and the PyTorch reference do.

  Args:
    x: [B, H, W, Cin].
    kernel: [3, 3, Cin, Cout] (HWIO), already scaled.
  Returns:
    [B, 2H, 2W, Cout].
  """
  w = jnp.pad(kernel, ((1, 1), (1, 1), (0, 0), (0, 0)))
  w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]  # [4, 4, Cin, Cout]
  # A transposed conv is a conv of the 2x-dilated input with the flipped kernel.
  w = w[::-1, ::-1]
  return jax.lax.conv_general_dilated(
      x, w.astype(x.dtype), window_strides=(1, 1), padding=((2, 2), (2, 2)),
      lhs_dilation=(2, 2), dimension_numbers=("NHWC", "HWIO", "NHWC"))


def blur_121(x: jax.Array) -> jax.Array:
  """Depthwise [1,2,1] x [1,2,1] / 16 blur with zero padding 1. x: [B, H, W, C]."""
  def along(x, axis):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (1, 1)
    p = jnp.pad(x, pad)
    n = x.shape[axis]
    sl = lambda start: jax.lax.slice_in_dim(p, start, start + n, axis=axis)
    return (sl(0) + 2 * sl(1) + sl(2)) * 0.25
  return along(along(x, 1), 2)


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
  """Per-sample, per-channel normalisation over H, W (biased variance, no affine).

  Statistics are computed in float32 whatever the compute dtype.
  x: [B, H, W, C].
  """
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  xc = x32 - mean
  var = jnp.mean(jnp.square(xc), axis=(1, 2), keepdims=True)
  return (xc * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """x * rsqrt(mean(x**2 over the last axis) + eps)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
