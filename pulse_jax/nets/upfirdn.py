"""FIR resampling of NHWC images: upsample, pad, filter, downsample (upfirdn2d semantics).

The semantics are those of NVIDIA's ``upfirdn2d`` (stylegan2-ada / stylegan3 ``torch_utils``):
for each channel, (1) upsample by inserting ``up - 1`` zeros *after* every pixel, (2) pad with
zeros (negative padding crops), (3) convolve with the FIR filter (a true convolution, shrinking
the image so that every output pixel's footprint lies inside the padded image), (4) keep every
``down``-th pixel. The filter is separable: ``taps`` [n] stand for the 2-D filter
``outer(taps, taps) / sum(taps)**2`` (what ``setup_filter([1, 3, 3, 1])`` makes), times ``gain``.

The filter is applied as a sum of shifted slices (n multiply-adds per axis), which XLA fuses
into one elementwise pass; no depthwise convolution. Everything is a pure jnp function.
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Padding = tuple[tuple[int, int], tuple[int, int]]


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


def _fir_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
  """True convolution of ``x`` with ``taps`` along ``axis``, valid part only (shrinks n - 1)."""
  n = taps.shape[0]
  out_len = x.shape[axis] - n + 1
  if out_len < 1:
    raise ValueError(f"image of size {x.shape[axis]} is smaller than the {n}-tap filter.")
  acc = None
  for j in range(n):  # y[i] = sum_j taps[n - 1 - j] * x[i + j]
    c = float(taps[n - 1 - j])
    if c == 0.0:
      continue
    term = jax.lax.slice_in_dim(x, j, j + out_len, axis=axis) * jnp.asarray(c, x.dtype)
    acc = term if acc is None else acc + term
  if acc is None:
    shape = list(x.shape)
    shape[axis] = out_len
    acc = jnp.zeros(shape, x.dtype)
  return acc


def upfirdn2d(x: jax.Array, taps: Sequence[float] | None, up: int = 1, down: int = 1,
              padding: Padding = ((0, 0), (0, 0)), gain: float = 1.0) -> jax.Array:
  """Upsample, pad, FIR-filter and downsample ``x``.

  Args:
    x: [B, H, W, C] float.
    taps: separable filter taps [n] (normalised here, see module docstring); None: identity.
    up, down: integer factors >= 1.
    padding: ((top, bottom), (left, right)) in pixels of the upsampled image; negative crops.
    gain: overall scale of the result.

  Returns:
    [B, (H * up + top + bottom - n + 1) // down (rounded up), ..., C], dtype of ``x``.
  """
  if up < 1 or down < 1:
    raise ValueError(f"up and down must be >= 1, got {up}, {down}.")
  (top, bottom), (left, right) = padding
  zero = jnp.zeros((), x.dtype)
  # Zero insertion after every pixel and the padding (or cropping) in one lax.pad.
  x = jax.lax.pad(x, zero, ((0, 0, 0), (top, bottom + up - 1, up - 1),
                            (left, right + up - 1, up - 1), (0, 0, 0)))
  if taps is not None:
    k = normalized_taps(taps)
    x = _fir_axis(x, k, 1)
    x = _fir_axis(x, k, 2)
  if gain != 1.0:
    x = x * jnp.asarray(gain, x.dtype)
  if down > 1:
    x = x[:, ::down, ::down, :]
  return x


def upsample2d(x: jax.Array, taps: Sequence[float], up: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H * up, W * up, C]: NVIDIA's ``upsample2d`` (gain up**2 keeps DC)."""
  n = len(taps)
  pad = ((n + up - 1) // 2, (n - up) // 2)
  return upfirdn2d(x, taps, up=up, padding=(pad, pad), gain=float(up * up))


def downsample2d(x: jax.Array, taps: Sequence[float], down: int = 2) -> jax.Array:
  """[B, H, W, C] -> [B, H // down, W // down, C]: NVIDIA's ``downsample2d``."""
  n = len(taps)
  pad = ((n - down + 1) // 2, (n - down) // 2)
  return upfirdn2d(x, taps, down=down, padding=(pad, pad))
