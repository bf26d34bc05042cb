"""FIR resampling of NHWC images, NVIDIA's torch_utils/ops upfirdn2d and filtered_lrelu: the one
implementation StyleGAN2 and StyleGAN3 both use.

The semantics are those of NVIDIA's ``upfirdn2d`` (stylegan2-ada / stylegan3 ``torch_utils``,
``_upfirdn2d_ref``): for each channel, (1) upsample by inserting ``up - 1`` zeros *after* every
pixel, (2) pad with zeros (negative padding crops), (3) convolve with the FIR filter ``f`` (a
true convolution, shrinking the image so that every output pixel's footprint lies inside the
padded image), (4) keep every ``down``-th pixel. ``f`` is a prepared filter: [k] separable (each
axis filtered with it, the 2-D filter is ``outer(f, f)``, each axis scaled by sqrt(gain)),
[k, k] (scaled by gain), or None (identity).

A separable filter is applied per axis as a sum of shifted, strided slices, each output phase
with only the taps that meet input pixels: no zero is multiplied and no depthwise convolution
runs (XLA:CPU runs those slowly, inside the search's loop most). Its input gradient is the
adjoint resampling, computed the same way (a custom VJP). Everything is a pure jnp function.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.nets import ops

# ((x0, x1, y0, y1) as NVIDIA's padding) or one int for all four sides.
Padding = int | tuple[int, int, int, int]
HIGHEST = jax.lax.Precision.HIGHEST


def normalized_taps(taps: Sequence[float]) -> np.ndarray:
  """1-D taps [n] float64 scaled to sum to 1 (so the 2-D outer product sums to 1)."""
  k = np.asarray(taps, np.float64).reshape(-1)
  if k.size == 0 or not np.isfinite(k).all() or k.sum() == 0:
    raise ValueError(f"FIR taps must be a non-empty finite list with a non-zero sum, got {taps}.")
  return k / k.sum()


def setup_filter(taps: Sequence[float]) -> np.ndarray:
  """The 2-D filter [n, n] float32 NVIDIA's ``setup_filter(taps)`` makes (the stored buffer)."""
  k = np.asarray(taps, np.float32).reshape(-1)
  f = np.outer(k, k)
  return (f / f.sum()).astype(np.float32)


def _padding4(padding: Padding) -> tuple[int, int, int, int]:
  if isinstance(padding, int):
    return (padding,) * 4
  px0, px1, py0, py1 = padding
  return int(px0), int(px1), int(py0), int(py1)


def upfirdn2d(x: jax.Array, f: jax.Array | np.ndarray | None, up: int = 1, down: int = 1,
              padding: Padding = 0, gain: float = 1.0) -> jax.Array:
  """Upsample, pad, FIR-filter and downsample ``x`` (NVIDIA's ``_upfirdn2d_ref``, NHWC).

  Args:
    x: [B, H, W, C] float.
    f: the prepared filter (not normalised here): [k] separable, [k, k], or None (identity).
      May be traced (StyleGAN3's stored filters are parameters).
    up, down: integer factors >= 1.
    padding: (x0, x1, y0, y1) in pixels of the upsampled image, or one int; negative crops.
    gain: overall scale of the result (sqrt(gain) per axis for a separable f).

  Returns:
    [B, H', W', C] in x's dtype, H' = (H up + y0 + y1 - k) // down + 1 (W' alike with x0, x1).
  """
  if up < 1 or down < 1:
    raise ValueError(f"up and down must be >= 1, got {up}, {down}.")
  px0, px1, py0, py1 = _padding4(padding)
  if f is not None and jnp.ndim(f) == 1:  # separable: shifted slices per axis, by phase
    g = jnp.asarray(f, x.dtype)[::-1] * math.sqrt(gain)
    x = _fir_axis(x, g, up, down, py0, py1, 1)
    return _fir_axis(x, g, up, down, px0, px1, 2)
  if up > 1 or any((px0, px1, py0, py1)):
    x = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (py0, py1 + up - 1, up - 1),
                                               (px0, px1 + up - 1, up - 1), (0, 0, 0)))
  if f is None:
    x = x[:, ::down, ::down]
    return x * jnp.asarray(gain, x.dtype) if gain != 1 else x
  return _depthwise(x, jnp.asarray(f, x.dtype)[::-1, ::-1] * gain, (down, down))


def upsample2d(x: jax.Array, taps: Sequence[float], up: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H * up, W * up, C]: NVIDIA's ``upsample2d`` with the normalised
  separable ``taps`` (gain up**2 keeps DC)."""
  n = len(taps)
  lo, hi = (n + up - 1) // 2, (n - up) // 2
  return upfirdn2d(x, normalized_taps(taps), up=up, padding=(lo, hi, lo, hi),
                   gain=float(up * up))


def downsample2d(x: jax.Array, taps: Sequence[float], down: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H // down, W // down, C]: NVIDIA's ``downsample2d`` with the
  normalised separable ``taps``."""
  n = len(taps)
  lo, hi = (n - down + 1) // 2, (n - down) // 2
  return upfirdn2d(x, normalized_taps(taps), down=down, padding=(lo, hi, lo, hi))


def filtered_lrelu(x: jax.Array, fu: jax.Array | None, fd: jax.Array | None, b: jax.Array,
                   up: int, down: int, padding: tuple[int, int, int, int],
                   gain: float = math.sqrt(2.0), slope: float = ops.LRELU_SLOPE,
                   clamp: float | None = None) -> jax.Array:
  """NVIDIA's `_filtered_lrelu_ref` on NHWC: + bias b [C], up-sample by `up` and FIR with fu
  (gain up**2; none without fu) under `padding` (x0, x1, y0, y1), leaky ReLU(slope) * gain
  (slope 1: linear), clamp to [-clamp, clamp], FIR with fd and down-sample by `down`.
  x: [B, H, W, C] float32 -> [B, H', W', C]."""
  x = x + b
  x = upfirdn2d(x, fu, up=up, padding=padding, gain=up ** 2 if fu is not None else 1.0)
  x = ops.bias_act(x, None, "linear" if slope == 1 else "lrelu", alpha=slope, gain=gain,
                   clamp=clamp)
  return upfirdn2d(x, fd, down=down)


def _depthwise(x: jax.Array, taps: jax.Array, strides: tuple[int, int]) -> jax.Array:
  """Valid correlation of every channel with `taps` [kh, kw]. x: [B, H, W, C] (NHWC)."""
  c = x.shape[-1]
  kernel = jnp.broadcast_to(taps[:, :, None, None], taps.shape + (1, c)).astype(x.dtype)
  return jax.lax.conv_general_dilated(x, kernel, strides, "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=c, precision=HIGHEST)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _fir_axis(x: jax.Array, g: jax.Array, up: int, down: int, p0: int, p1: int,
              axis: int) -> jax.Array:
  """`upfirdn2d` along one axis: zero-insert `up`, pad (p0, p1), correlate with g [k], keep
  every `down`-th. Computed as a sum of k shifted (strided) slices of x, each output phase
  (j mod up) with only the taps that meet input pixels. Its input gradient is the adjoint
  resampling (NVIDIA's upfirdn2d backward: flipped taps, up and down swapped), computed the
  same way."""
  return _fir_axis_impl(x, g, up, down, p0, p1, axis)


def _fir_axis_fwd(x, g, up, down, p0, p1, axis):
  return _fir_axis_impl(x, g, up, down, p0, p1, axis), (x, g)


def _fir_axis_bwd(up, down, p0, p1, axis, res, dy):
  x, g = res
  n, k, out_len = x.shape[axis], g.shape[0], dy.shape[axis]
  q0 = k - 1 - p0
  q1 = n * up - up + 1 - out_len * down + p0
  dx = _fir_axis_impl(dy, g[::-1], down, up, q0, q1, axis)
  _, g_vjp = jax.vjp(lambda g: _fir_axis_impl(x, g, up, down, p0, p1, axis), g)  # unused
  return dx, g_vjp(dy)[0]


_fir_axis.defvjp(_fir_axis_fwd, _fir_axis_bwd)


def _fir_axis_impl(x: jax.Array, g: jax.Array, up: int, down: int, p0: int, p1: int,
                   axis: int) -> jax.Array:
  n, k = x.shape[axis], g.shape[0]
  length = n * up + p0 + p1  # the zero-inserted, padded signal
  out_len = (length - k) // down + 1
  if out_len < 1:
    raise ValueError(f"upfirdn2d: a signal of {length} is shorter than the {k}-tap filter.")
  # output j reads v[j * down + t] = x[(j * down + t - p0) / up] (zero off the grid / outside)
  period = up // math.gcd(up, down)  # outputs j and j + period meet the same taps
  count = -(-out_len // period)
  step = down * period // up  # input pixels between outputs j and j + period
  phases = []
  for r in range(period):
    terms = [(t, (r * down + t - p0) // up) for t in range(k) if (r * down + t - p0) % up == 0]
    lo = min((i for _, i in terms), default=0)
    hi = max((i + (count - 1) * step for _, i in terms), default=0)
    before, after = max(-lo, 0), max(hi - (n - 1), 0)
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype),
                     [(before, after, 0) if a == axis else (0, 0, 0) for a in range(x.ndim)])
    acc = None
    for t, i in terms:
      start = i + before
      sl = jax.lax.slice_in_dim(xp, start, start + (count - 1) * step + 1, step, axis=axis)
      term = sl * g[t]
      acc = term if acc is None else acc + term
    if acc is None:
      shape = list(x.shape)
      shape[axis] = count
      acc = jnp.zeros(shape, x.dtype)
    phases.append(acc)
  if period == 1:
    y = phases[0]
  else:
    y = jnp.stack(phases, axis=axis + 1)
    y = y.reshape(x.shape[:axis] + (count * period,) + x.shape[axis + 1:])
  return jax.lax.slice_in_dim(y, 0, out_len, axis=axis)
