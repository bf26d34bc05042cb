"""The Keys cubic kernel and MATLAB's `imresize` (bicubic, antialiased) as one matrix per axis.

NIQE's second scale is MATLAB's `imresize(img, 0.5)`: bicubic (the Keys kernel, a = -0.5),
antialiased when shrinking (the kernel stretched by 1 / scale: 8 taps at scale 0.5), output
pixel x (1-based) centred on input coordinate `x / scale + (1 - 1 / scale) / 2`, each row of
taps normalised to sum 1, symmetric padding at the borders (`d c b a | a b c d`). Along one
axis that is a linear map `[n] -> [ceil(n * scale)]`, built here once in float64 numpy with the
padding folded in, and applied as `Mh @ image @ Mw.T`. numpy only.
"""
from __future__ import annotations

import functools
import math

import numpy as np

KEYS_A = -0.5


def keys_cubic(x: np.ndarray, a: float = KEYS_A) -> np.ndarray:
  """The Keys cubic convolution kernel at `x` (any shape, float64), zero for |x| >= 2."""
  x = np.abs(np.asarray(x, np.float64))
  x2, x3 = x * x, x * x * x
  inner = (a + 2) * x3 - (a + 3) * x2 + 1
  outer = a * x3 - 5 * a * x2 + 8 * a * x - 4 * a
  return np.where(x <= 1, inner, np.where(x < 2, outer, 0.0))


def _symmetric_index(i: np.ndarray, n: int) -> np.ndarray:
  """0-based source index in [0, n) of positions `i` of a symmetric-padded axis (edge repeated)."""
  period = 2 * n
  i = np.mod(i, period)
  return np.where(i >= n, period - 1 - i, i)


@functools.lru_cache(maxsize=32)
def matlab_resize_matrix(n: int, scale: float) -> np.ndarray:
  """MATLAB `imresize`'s bicubic map of one axis of length `n`: `[ceil(n * scale), n] float64`
  (antialiased when `scale < 1`, symmetric padding folded in). Read-only."""
  if n < 1 or scale <= 0:
    raise ValueError(f"need n >= 1 and scale > 0, got n={n}, scale={scale}")
  out = math.ceil(n * scale)
  stretch = min(scale, 1.0)                     # the antialiasing: kernel widened by 1 / scale
  width = 4.0 / stretch
  centre = np.arange(1, out + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)  # 1-based
  left = np.floor(centre - width / 2)
  taps = math.ceil(width) + 2
  index = left[:, None] + np.arange(taps)[None, :]                        # 1-based
  weights = stretch * keys_cubic((centre[:, None] - index) * stretch)
  weights /= weights.sum(axis=1, keepdims=True)
  m = np.zeros((out, n))
  rows = np.repeat(np.arange(out), taps)
  np.add.at(m, (rows, _symmetric_index(index.astype(np.int64).ravel() - 1, n)), weights.ravel())
  m.setflags(write=False)
  return m

