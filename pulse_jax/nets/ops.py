"""The shared ops of every network (StyleGAN v1, 2, 3), as pure functions on NHWC activations:
what NVIDIA's torch_utils/ops holds for its networks, plus StyleGAN v1's blocks.

  activations: `leaky_relu` (and its inverse), `ACTIVATIONS`, `bias_act` (NVIDIA's bias_act);
  layers: `dense` (equalised-lr FullyConnectedLayer), `conv_nhwc` (stride-1 conv with a fast
    input gradient) and its prepared forms, the 2x up-sampling convs, `blur_121`;
  normalisation: `pixel_norm` (= NVIDIA's normalize_2nd_moment), `instance_norm`.
FIR resampling (upfirdn2d, filtered_lrelu) is `pulse_jax.nets.upfirdn`.

Every function here is a pure jnp function so that the networks built from them
are jit-able, differentiable and rematerialisable. Weights are stored unscaled
(as in the official TF and PyTorch checkpoints) and multiplied by their
equalised-learning-rate coefficient at run time.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LRELU_SLOPE = 0.2


def he_coefficient(fan_in: int, gain: float = math.sqrt(2.0), lrmul: float = 1.0) -> float:
  """Run-time weight multiplier of the equalised learning rate: gain / sqrt(fan_in) * lrmul."""
  return gain / math.sqrt(fan_in) * lrmul


def leaky_relu(x: jax.Array, slope: float = LRELU_SLOPE) -> jax.Array:
  """x where x >= 0, else x * slope. Any shape and dtype."""
  return jnp.where(x >= 0, x, x * slope)


def leaky_relu_inverse(y: jax.Array, slope: float = LRELU_SLOPE) -> jax.Array:
  """The inverse of `leaky_relu`: y where y >= 0, else y / slope. Any shape and dtype."""
  return jnp.where(y >= 0, y, y / slope)


class Activation(NamedTuple):
  """One of NVIDIA's bias_act.activation_funcs: func(x, alpha), default alpha and gain."""
  func: Callable[[jax.Array, float], jax.Array]
  def_alpha: float
  def_gain: float


ACTIVATIONS = {
    "linear": Activation(lambda x, alpha: x, 0.0, 1.0),
    "relu": Activation(lambda x, alpha: jax.nn.relu(x), 0.0, math.sqrt(2.0)),
    "lrelu": Activation(leaky_relu, LRELU_SLOPE, math.sqrt(2.0)),
}


def bias_act(x: jax.Array, b: jax.Array | None = None, act: str = "linear",
             alpha: float | None = None, gain: float | None = None,
             clamp: float | None = None) -> jax.Array:
  """NVIDIA's bias_act on the last axis: (x + b) -> act(alpha) -> * gain -> clip to +-clamp.

  x: [..., C]; b: [C] or None; alpha, gain: None for the activation's defaults (`ACTIVATIONS`).
  A gain of 1 multiplies nothing, a clamp of None clips nothing. Same shape and dtype as x.
  """
  spec = ACTIVATIONS[act]
  if b is not None:
    x = x + b
  x = spec.func(x, spec.def_alpha if alpha is None else alpha)
  gain = spec.def_gain if gain is None else gain
  if gain != 1.0:
    x = x * gain
  if clamp is not None:
    x = jnp.clip(x, -clamp, clamp)
  return x


def dense(p: dict, x: jax.Array, lr_multiplier: float = 1.0, precision=None) -> jax.Array:
  """NVIDIA's FullyConnectedLayer without activation (equalised learning rate).

  p: {'kernel': [in, out], 'bias': [out]} as stored (torch's weight transposed); x: [B, in].
  Returns x @ (kernel * lr / sqrt(in)) + bias * lr, [B, out] in x's dtype; `precision`: the
  matmul's `jax.lax.Precision` (None: the backend's default).
  """
  gain = lr_multiplier / math.sqrt(p["kernel"].shape[0])
  y = jnp.matmul(x, p["kernel"] * gain, precision=precision)
  return y + (p["bias"] * lr_multiplier if lr_multiplier != 1 else p["bias"])


def _conv_plain(x: jax.Array, kernel: jax.Array, padding, precision=None) -> jax.Array:
  return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), padding,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv_nhwc(x: jax.Array, kernel: jax.Array, kernel_t: jax.Array, padding,
              precision=None) -> jax.Array:
  """Stride-1 conv. x: [B, H, W, Cin]; kernel: [kh, kw, Cin, Cout] (HWIO);
  kernel_t: `transpose_kernel(kernel)`, [kh, kw, Cout, Cin]; padding: ((top, bottom), (left, right));
  precision: the convs' `jax.lax.Precision`, forward and backward (None: the default).

  The same function as `lax.conv_general_dilated`; its input gradient is written as a plain
  NHWC/HWIO conv of the output gradient with `kernel_t`, which the caller computes once (the
  search hoists it out of its loop; see `prepare_conv2d`). JAX's own transpose rule gives a
  conv in swapped layouts, which XLA:CPU only rewrites to its fast convolution outside loops:
  inside the search's `lax.scan` the backward convs took a slow generic path (measured ~3x on
  the whole step; experiments/results/cpu_2026-11-22.md). `kernel_t` only feeds the backward
  pass, so its own cotangent is zero.
  """
  del kernel_t
  return _conv_plain(x, kernel, padding, precision)


def _conv_nhwc_fwd(x, kernel, kernel_t, padding, precision):
  return _conv_plain(x, kernel, padding, precision), (x, kernel, kernel_t)


def _conv_nhwc_bwd(padding, precision, res, g):
  x, kernel, kernel_t = res
  kh, kw = kernel.shape[:2]
  (t, b), (l, r) = padding
  dx = _conv_plain(g, kernel_t, ((kh - 1 - t, kh - 1 - b), (kw - 1 - l, kw - 1 - r)), precision)
  _, kernel_vjp = jax.vjp(lambda w: _conv_plain(x, w, padding, precision), kernel)  # unused
  return dx.astype(x.dtype), kernel_vjp(g)[0], jnp.zeros_like(kernel_t)


conv_nhwc.defvjp(_conv_nhwc_fwd, _conv_nhwc_bwd)


def transpose_kernel(kernel: jax.Array) -> jax.Array:
  """The kernel of a conv's input gradient: [kh, kw, Cin, Cout] -> flipped [kh, kw, Cout, Cin]."""
  return jnp.swapaxes(kernel[::-1, ::-1], 2, 3)


def prepare_conv2d(kernel: jax.Array, dtype=None) -> dict:
  """Run-time weights of a 'SAME' conv: {'kernel': [k, k, Cin, Cout], 'kernel_t': [k, k, Cout, Cin]}.

  `kernel` is already scaled; `dtype` (default: the kernel's) is the compute dtype.
  """
  kernel = kernel.astype(dtype or kernel.dtype)
  return {"kernel": kernel, "kernel_t": transpose_kernel(kernel)}


def conv2d_prepared(x: jax.Array, w: dict) -> jax.Array:
  """'SAME' stride-1 convolution. x: [B, H, W, Cin]; w: `prepare_conv2d(kernel)`."""
  pad = w["kernel"].shape[0] // 2
  return conv_nhwc(x, w["kernel"].astype(x.dtype), w["kernel_t"].astype(x.dtype),
                   ((pad, pad), (pad, pad)))


def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """'SAME' stride-1 convolution. x: [B, H, W, Cin]; kernel: [k, k, Cin, Cout] (HWIO)."""
  return conv2d_prepared(x, prepare_conv2d(kernel, x.dtype))


def upscale_nearest_2x(x: jax.Array) -> jax.Array:
  """Nearest-neighbour 2x up-sampling. x: [B, H, W, C] -> [B, 2H, 2W, C]."""
  b, h, w, c = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
  return x.reshape(b, 2 * h, 2 * w, c)


# Both 2x up-sampling convolutions of StyleGAN are computed by output phase ("sub-pixel"):
# output pixel (2m + a, 2n + c) only sees a 2x2 window of the input, at rows (m - 1, m) for
# a = 0 and (m, m + 1) for a = 1 (columns alike), with 2x2 taps that are sums of the 3x3
# kernel's taps. Per axis, `_PHASE_TAPS[mode][a]` maps the 3 taps to those 2:
#   nearest: conv3x3(upscale_nearest_2x(x)), the reference below 128 px;
#   fused:   the 3x3 kernel zero-padded to 5x5, its four 4x4 windows summed, applied as a
#            transposed conv with stride 2 and padding 1 (the reference from 128 px up).
# Same sums as the reference's formulation, without multiplying the zeros of an up-sampled or
# dilated input: 4 instead of 9 (nearest) or 16 (fused) multiply-adds per output pixel and
# channel pair, and plain stride-1 convolutions, which every backend runs fast.
_PHASE_TAPS = {
    "nearest": (((1, 0, 0), (0, 1, 1)), ((1, 1, 0), (0, 0, 1))),
    "fused": (((0, 0, 1), (1, 1, 0)), ((0, 1, 1), (1, 0, 0))),
}
_PHASE_PADS = ((1, 0), (0, 1))  # input padding (before, after) of phase 0 and 1, per axis


def prepare_upsample_conv2d(kernel: jax.Array, mode: str, dtype=None) -> dict:
  """Run-time weights of `upsample_conv2d`: the four phases' 2x2 kernels and their transposes.

  kernel: [3, 3, Cin, Cout], already scaled; mode: 'nearest' | 'fused'.
  Returns {'kernel': [2 (a), 2 (c), 2, 2, Cin, Cout], 'kernel_t': [2, 2, 2, 2, Cout, Cin]}
  in `dtype` (default: the kernel's); the taps are summed in the kernel's dtype.
  """
  taps = jnp.asarray(_PHASE_TAPS[mode], kernel.dtype)  # [2 (phase), 2 (tap), 3]
  phases = jnp.einsum("ari,csj,ijxy->acrsxy", taps, taps, kernel).astype(dtype or kernel.dtype)
  return {"kernel": phases, "kernel_t": jax.vmap(jax.vmap(transpose_kernel))(phases)}


def upsample_conv2d_prepared(x: jax.Array, w: dict) -> jax.Array:
  """2x up-sampling fused with a 3x3 conv. x: [B, H, W, Cin]; w: `prepare_upsample_conv2d`.

  Returns [B, 2H, 2W, Cout].
  """
  rows = []
  for a in (0, 1):
    cols = [conv_nhwc(x, w["kernel"][a, c].astype(x.dtype), w["kernel_t"][a, c].astype(x.dtype),
                      (_PHASE_PADS[a], _PHASE_PADS[c])) for c in (0, 1)]
    rows.append(jnp.stack(cols, axis=3))  # [B, H, W, 2 (c), Cout]
  y = jnp.stack(rows, axis=2)  # [B, H, 2 (a), W, 2 (c), Cout]
  b, h, _, w_, _, ch = y.shape
  return y.reshape(b, 2 * h, 2 * w_, ch)


def upsample_conv2d(x: jax.Array, kernel: jax.Array, mode: str) -> jax.Array:
  """2x up-sampling fused with a 3x3 conv, exactly as StyleGAN's `mode` ('nearest' | 'fused').

  Args:
    x: [B, H, W, Cin].
    kernel: [3, 3, Cin, Cout] (HWIO), already scaled.
  Returns:
    [B, 2H, 2W, Cout].
  """
  return upsample_conv2d_prepared(x, prepare_upsample_conv2d(kernel, mode, x.dtype))


def blur_121(x: jax.Array) -> jax.Array:
  """Depthwise [1,2,1] x [1,2,1] / 16 blur with zero padding 1. x: [B, H, W, C].

  [1, 2, 1] is [1, 1] * [1, 1]: two 2x2 box sums (`lax.reduce_window`, the first padded by 1
  on each side), which XLA computes without materialising a padded copy of x.
  """
  def box(x, pad):
    return jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, (1, 2, 2, 1),
                                 (1, 1, 1, 1), ((0, 0), pad, pad, (0, 0)))
  return box(box(x, (1, 1)), (0, 0)) * jnp.asarray(1 / 16, x.dtype)


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
  """Per-sample, per-channel normalisation over H, W (biased variance, no affine).

  Statistics are computed in float32 at least (float64 for float64 inputs).
  x: [B, H, W, C].
  """
  x32 = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
  xc = x32 - mean
  var = jnp.mean(jnp.square(xc), axis=(1, 2), keepdims=True)
  return (xc * jax.lax.rsqrt(var + eps)).astype(x.dtype)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """x * rsqrt(mean(x**2 over the last axis) + eps), any shape [..., C]: StyleGAN v1's pixel
  norm, and on [B, C] NVIDIA's `normalize_2nd_moment` (StyleGAN2/3 mapping inputs)."""
  return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
