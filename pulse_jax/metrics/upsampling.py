"""The PULSE paper's baselines (Table 2): nearest and bicubic up-sampling of the LR input.

Both take `lr: [h, w, C]` (or `[h, w]`) float in [0, 1] and an integer factor and return
`[h * factor, w * factor, C]` float32 in [0, 1]; numpy only.

- nearest: each LR pixel repeated factor x factor times.
- bicubic: separable Keys cubic convolution (a = -0.5, 4 taps), HR pixel i centred on LR
  coordinate `(i + 0.5) / factor - 0.5` (pixel centres aligned, as MATLAB `imresize`, PIL and
  `align_corners=False`), edges replicated (taps beyond the border read the border pixel),
  computed in float64, clipped to [0, 1]. Away from the border (2 LR pixels, i.e. 2 * factor HR
  pixels) this equals PIL's `Image.resize(..., Image.BICUBIC)` of a float image; at the border
  PIL drops the taps outside the image and renormalises instead of replicating.

`pulse_jax.forward.bicubic` is the other direction (PULSE's HR -> LR down-sampling, reflect
padding, kernel stretched by the factor); it has no up-sampler to match.
"""
from __future__ import annotations

import functools

import numpy as np

from pulse_jax.metrics.resize import keys_cubic


def _check(lr, factor) -> tuple[np.ndarray, int]:
  """`lr` as float64 `[h, w, C]` (`[h, w]` -> C = 1) and `factor` as an int >= 1."""
  if not isinstance(factor, (int, np.integer)) or isinstance(factor, bool) or factor < 1:
    raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
  lr = np.asarray(lr, np.float64)
  if lr.ndim == 2:
    lr = lr[..., None]
  if lr.ndim != 3 or min(lr.shape) < 1:
    raise ValueError(f"lr must be [h, w, C] or [h, w], got shape {lr.shape}")
  return lr, int(factor)


def _restore(hr: np.ndarray, ndim: int) -> np.ndarray:
  """`hr: [H, W, C]` as float32 clipped to [0, 1], `[H, W]` again when the input was."""
  hr = np.clip(hr, 0.0, 1.0).astype(np.float32)
  return hr[..., 0] if ndim == 2 else hr


def nearest(lr, factor: int) -> np.ndarray:
  """Nearest-neighbour up-sampling: `[h, w, C]` -> `[h * factor, w * factor, C]` float32."""
  ndim = np.ndim(lr)
  lr, factor = _check(lr, factor)
  return _restore(np.repeat(np.repeat(lr, factor, axis=0), factor, axis=1), ndim)


@functools.lru_cache(maxsize=32)
def bicubic_upsample_matrix(n: int, factor: int) -> np.ndarray:
  """The bicubic up-sampling of one axis: `[n * factor, n] float64` (rows sum to 1, edges
  replicated). Read-only."""
  centre = (np.arange(n * factor) + 0.5) / factor - 0.5              # LR coordinate of HR i
  first = np.floor(centre).astype(np.int64) - 1                       # 4 taps: first .. first+3
  index = first[:, None] + np.arange(4)[None, :]
  weights = keys_cubic(centre[:, None] - index)
  m = np.zeros((n * factor, n))
  rows = np.repeat(np.arange(n * factor), 4)
  np.add.at(m, (rows, np.clip(index, 0, n - 1).ravel()), weights.ravel())
  m.setflags(write=False)
  return m


def bicubic(lr, factor: int) -> np.ndarray:
  """Bicubic up-sampling (Keys a = -0.5, edges replicated, clipped to [0, 1]):
  `[h, w, C]` -> `[h * factor, w * factor, C]` float32."""
  ndim = np.ndim(lr)
  lr, factor = _check(lr, factor)
  mh = bicubic_upsample_matrix(lr.shape[0], factor)
  mw = bicubic_upsample_matrix(lr.shape[1], factor)
  return _restore(np.einsum("Hh,hwc,Ww->HWc", mh, lr, mw), ndim)
