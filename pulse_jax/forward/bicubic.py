"""Bicubic down-sampling as PULSE's reference does it, as two dense matrix products.

The reference filters separably with a Keys kernel (a = -0.5) of length ``4 * factor`` sampled
at ``(i - floor(size / 2) + 0.5) / factor`` and normalised to sum 1, after reflect padding of
``size - factor`` pixels split floor/ceil (top/bottom, left/right), stride ``factor``, vertical
pass first. That whole operation along one axis is a linear map ``[n] -> [n / factor]``; we
build it once in float64 numpy from the reference's float32 taps (reflect padding folded in)
and apply it as
``out = Mh @ x @ Mw.T``. Exact, differentiable, jit-able, and a plain matmul on every backend.

Differences from the reference (documented on purpose):
- ``factor == 1`` returns the input unchanged. (The reference formula would apply a 4-tap
  half-pixel-shifted interpolation; the reference itself only ever uses factors >= 2.)
- A padding wider than the axis (only when ``n == factor``) reflects repeatedly, as
  ``numpy.pad(mode="reflect")`` does; torch's reflect padding raises there.
- Odd factors follow the reference formula exactly, including its half-pixel (HR) offset caused
  by the floor/ceil padding split.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_KEYS_A = -0.5


def _kernel32(factor: int) -> np.ndarray:
  """The reference's 1-D taps, computed as it computes them: in float32 arithmetic.

  Elementwise the same operations as the reference's ``bicubic_kernel`` (``x * x * x`` for its
  ``pow(x, 3)``), so the raw taps are bit-identical to torch's; the normalisation divides by a
  float32 sum, which equals torch's for every power-of-two factor (for other factors torch's
  summation order can differ by an ulp). A float64 search uses these float32 values, as the
  reference's own float64 run does (its buffer cast to float64).
  """
  f = np.float32
  a = f(_KEYS_A)
  size = 4 * factor
  x = np.abs((np.arange(size, dtype=f) - f(np.floor(size / 2)) + f(0.5)) / f(factor))
  x2 = x * x
  x3 = x2 * x
  inner = (a + f(2)) * x3 - (a + f(3)) * x2 + f(1)
  outer = a * x3 - f(5) * a * x2 + f(8) * a * x - f(4) * a
  k = np.where(x <= 1, inner, np.where(x < 2, outer, f(0))).astype(f)
  return (k / k.sum(dtype=f)).astype(f)


def _check_factor(factor) -> int:
  if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
    raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
  return int(factor)


def bicubic_kernel(factor: int) -> np.ndarray:
  """The reference's 1-D filter taps: ``[4 * factor] float32``, summing to 1."""
  return _kernel32(_check_factor(factor))


def _reflect_index(n: int, before: int, after: int) -> np.ndarray:
  """Source index in ``[0, n)`` of each position of a reflect-padded axis (no edge repeat)."""
  i = np.arange(-before, n + after)
  period = 2 * (n - 1)
  if period == 0:
    return np.zeros_like(i)
  i = np.mod(i, period)
  return np.where(i >= n, period - i, i)


@functools.lru_cache(maxsize=64)
def downsample_matrix(n: int, factor: int) -> np.ndarray:
  """Linear map of one axis: ``[n / factor, n] float64`` (reflect padding folded in)."""
  factor = _check_factor(factor)
  if n % factor:
    raise ValueError(f"axis length {n} is not a multiple of factor {factor}")
  if factor == 1:
    return np.eye(n)
  k = _kernel32(factor).astype(np.float64)
  pad = len(k) - factor
  src = _reflect_index(n, pad // 2, pad - pad // 2)  # [n + pad]
  out = n // factor
  m = np.zeros((out, n))
  rows = np.repeat(np.arange(out), len(k))
  cols = src[np.arange(out)[:, None] * factor + np.arange(len(k))[None, :]].ravel()
  np.add.at(m, (rows, cols), np.tile(k, out))
  m.setflags(write=False)
  return m


def downsample(images: jax.Array, factor: int) -> jax.Array:
  """Down-sample ``images: [..., C, H, W]`` float to ``[..., C, H / f, W / f]`` (same dtype).

  ``factor`` is a static Python int >= 1; H and W must be multiples of it. Any leading batch
  dims and any C. Computed at full float32 precision (``Precision.HIGHEST``, no TF32).
  """
  factor = _check_factor(factor)
  images = jnp.asarray(images)
  if images.ndim < 3:
    raise ValueError(f"images must be [..., C, H, W], got shape {images.shape}")
  if factor == 1:
    return images
  h, w = images.shape[-2:]
  if h % factor or w % factor:
    raise ValueError(f"H, W = {h}, {w} must be multiples of factor {factor}")
  dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
  mh = jnp.asarray(downsample_matrix(h, factor), dtype)
  mw = jnp.asarray(downsample_matrix(w, factor), dtype)
  hi = jax.lax.Precision.HIGHEST
  rows = jnp.einsum("oh,...hw->...ow", mh, images.astype(dtype), precision=hi)  # vertical
  return jnp.einsum("...ow,pw->...op", rows, mw, precision=hi)  # then horizontal
