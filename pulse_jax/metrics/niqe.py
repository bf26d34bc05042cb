"""NIQE: the "completely blind" natural image quality evaluator (Mittal, Soundararajan, Bovik,
IEEE SPL 2013) with LIVE's pristine model; lower is more natural.

MATLAB-compatible (LIVE's `niqe.m`, as BasicSR's `calculate_niqe(img, 0, 'HWC', 'y')`):
1. the luma Y of YCbCr (BT.601 studio range, MATLAB's `rgb2ycbcr`), rounded to integers;
2. the image cropped to whole 96 x 96 blocks (top-left kept);
3. at each of two scales (the image, then MATLAB's bicubic `imresize` at 0.5, antialiased):
   the MSCN coefficients `(Y - mu) / (sigma + 1)` with mu, sigma the local mean and standard
   deviation under the model's 7 x 7 Gaussian window (edges replicated), and per block
   (96 x 96, then 48 x 48) 18 features: the generalised Gaussian fit of the coefficients
   (shape, scale) and, for the products of each coefficient with its right, lower, lower-right
   and lower-left neighbours (circular shifts), the asymmetric generalised Gaussian fit (shape,
   mean, left scale, right scale); shapes are fitted by moment matching on the grid
   0.2:0.001:10;
4. a multivariate Gaussian fitted to the blocks' 36 features (mean ignoring NaN, covariance of
   the blocks without NaN), and the distance to the pristine model:
   `sqrt((mu_p - mu)^T pinv((cov_p + cov) / 2) (mu_p - mu))`.

The image, the coefficients and their moments are float32 as in BasicSR (see `mscn`,
`fit_aggd`): that is what makes flat regions' coefficients exactly 0, as its values assume.
Written from the paper and LIVE's published algorithm; numpy only (the Gamma function from
`math`). The pristine parameters ship in `data/` with LIVE's notice (`data/README.md`).
"""
from __future__ import annotations

import functools
import math
import pathlib

import numpy as np

from pulse_jax.metrics.resize import matlab_resize_matrix

BLOCK = 96                   # the pristine model's block side (no overlap)
MIN_SIDE = 2 * BLOCK         # smallest side accepted: 2 x 2 blocks at least
_PARAMS = pathlib.Path(__file__).resolve().parent / "data" / "niqe_pris_params.npz"
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))   # right, below, below-right, below-left neighbours


@functools.lru_cache(maxsize=1)
def pristine_model() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """LIVE's pristine model: mean `[36]`, covariance `[36, 36]`, Gaussian window `[7, 7]`
  (float64, read-only)."""
  with np.load(_PARAMS, allow_pickle=False) as params:
    arrays = (params["mu_pris_param"].reshape(-1), params["cov_pris_param"],
              params["gaussian_window"])
  for a in arrays:
    a.setflags(write=False)
  return arrays


def luma(image: np.ndarray) -> np.ndarray:
  """Y of YCbCr as MATLAB's `rgb2ycbcr` (BT.601, 16..235) of `image: [H, W, 3]` RGB in
  [0, 255] (uint8 or float): `[H, W] float64`, not rounded.

  Computed in the float32 arithmetic of the reference implementation (RGB / 255 in float32,
  the dot product in float64, the result back in float32 and times 255), so that values that
  fall on a half integer round as the reference rounds them.
  """
  rgb01 = np.asarray(image).astype(np.float32) / np.float32(255)
  y01 = ((rgb01 @ np.array([65.481, 128.553, 24.966]) + 16.0) / 255.0).astype(np.float32)
  return (y01 * np.float32(255)).astype(np.float64)


def _gray(image) -> np.ndarray:
  """`image` ([H, W, 3] RGB, [H, W, 1] or [H, W] gray, in [0, 255]) -> Y rounded: [H, W]
  float64 (halves to even, as `np.round`)."""
  image = np.asarray(image)
  if image.dtype == bool or not (np.issubdtype(image.dtype, np.integer)
                                 or np.issubdtype(image.dtype, np.floating)):
    raise ValueError(f"image must be uint8 or float in [0, 255], got dtype {image.dtype}")
  if image.ndim == 3 and image.shape[-1] == 3:
    y = luma(image)
  elif image.ndim == 3 and image.shape[-1] == 1:
    y = image[..., 0].astype(np.float32).astype(np.float64)
  elif image.ndim == 2:
    y = image.astype(np.float32).astype(np.float64)
  else:
    raise ValueError(f"image must be [H, W, 3] RGB or [H, W] gray, got shape {image.shape}")
  if min(y.shape) < MIN_SIDE:
    raise ValueError(f"NIQE needs an image of at least {MIN_SIDE} x {MIN_SIDE} pixels (2 x 2 "
                     f"blocks of {BLOCK}); got {y.shape[0]} x {y.shape[1]}")
  if not np.isfinite(y).all():
    raise ValueError("image has non-finite values")
  return np.round(y)


def _filter_replicate(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Correlation of `image: [H, W]` with the symmetric `window: [k, k]` (k odd), edges
  replicated, accumulated in float64: `[H, W] float64`."""
  r = window.shape[0] // 2
  padded = np.pad(np.asarray(image, np.float64), r, mode="edge")
  h, w = image.shape
  out = np.zeros((h, w))
  for i in range(window.shape[0]):
    for j in range(window.shape[1]):
      out += window[i, j] * padded[i:i + h, j:j + w]
  return out


def mscn(image: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Mean-subtracted contrast-normalised coefficients of `image: [H, W]` in [0, 255]:
  `(image - mu) / (sigma + 1)`, `[H, W] float32`.

  In float32 as the reference: the filters accumulate in float64 and store float32, the rest
  is float32 arithmetic. That storing matters: it makes the coefficients of a flat region
  exactly 0 (a float64 mean leaves +-1e-14 there), and the shape fits count zeros apart from
  either side; on skimage's astronaut (large black areas) float64 throughout moves NIQE by 0.04.
  """
  f = np.float32
  image = np.asarray(image, f)
  mu = _filter_replicate(image, window).astype(f)
  mean_square = _filter_replicate(image * image, window).astype(f)
  sigma = np.sqrt(np.abs(mean_square - mu * mu))
  return (image - mu) / (sigma + f(1))


def _half_scale(image: np.ndarray) -> np.ndarray:
  """NIQE's second scale of `image: [H, W] float32` in [0, 255]: MATLAB's `imresize(image /
  255, 0.5) * 255` (bicubic, antialiased), each pass stored in float32 as the reference's."""
  f = np.float32
  x = np.asarray(image, f) / f(255)
  x = (matlab_resize_matrix(x.shape[0], 0.5) @ x).astype(f)        # vertical pass
  x = (x @ matlab_resize_matrix(x.shape[1], 0.5).T).astype(f)      # then horizontal
  return x * f(255)


@functools.lru_cache(maxsize=1)
def _shape_grid() -> tuple[np.ndarray, np.ndarray]:
  """The shape parameters tried (0.2:0.001:10, `[9801]`) and, for each, the generalised
  Gaussian's moment ratio `Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))` (float64)."""
  shapes = np.arange(0.2, 10.001, 0.001)
  gamma = np.vectorize(math.gamma, otypes=[np.float64])
  ratios = gamma(2 / shapes) ** 2 / (gamma(1 / shapes) * gamma(3 / shapes))
  return shapes, ratios


def _rms(values: np.ndarray) -> np.floating:
  """Root mean square of `values` in their dtype (NaN when empty)."""
  if not values.size:
    return values.dtype.type(np.nan)
  return np.sqrt(np.mean(values * values))


def fit_aggd(values: np.ndarray) -> tuple[float, float, float]:
  """Asymmetric generalised Gaussian fit of `values` (any shape, float) by moment matching:
  `(shape, left_scale, right_scale)`. A side with no value gives NaN scales and, as MATLAB's
  `min` over all-NaN, the grid's first shape.

  The moments are computed in the values' dtype: NIQE passes float32 coefficients, as the
  reference does, whose float32 moment ratio picks the reference's grid point (float64 moments
  move about one shape in a thousand by one grid step, 0.001).
  """
  values = values.ravel()
  left, right = _rms(values[values < 0]), _rms(values[values > 0])
  shapes, ratios = _shape_grid()
  with np.errstate(invalid="ignore", divide="ignore"):
    g = left / right
    r = np.mean(np.abs(values)) ** 2 / np.mean(values * values)
    r_norm = r * (g ** 3 + 1) * (g + 1) / (g ** 2 + 1) ** 2
  shape = float(shapes[0] if np.isnan(r_norm) else shapes[np.argmin((ratios - r_norm) ** 2)])
  to_scale = math.sqrt(math.gamma(1 / shape) / math.gamma(3 / shape))
  return shape, float(left) * to_scale, float(right) * to_scale


def block_features(block: np.ndarray) -> list[float]:
  """NIQE's 18 features of one block of MSCN coefficients `[b, b]`."""
  shape, left, right = fit_aggd(block)
  features = [shape, (left + right) / 2]
  for shift in _SHIFTS:
    shape, left, right = fit_aggd(block * np.roll(block, shift, axis=(0, 1)))
    mean = (right - left) * math.gamma(2 / shape) / math.gamma(1 / shape)
    features += [shape, mean, left, right]
  return features


def niqe_features(image: np.ndarray) -> np.ndarray:
  """The per-block features of `image` (as `niqe` takes it): `[blocks, 36] float64`, blocks
  column by column (the first 18 at full scale, the next 18 at half scale)."""
  y = _gray(image)
  rows, cols = y.shape[0] // BLOCK, y.shape[1] // BLOCK
  y = y[:rows * BLOCK, :cols * BLOCK]
  _, _, window = pristine_model()
  scales = []
  for scale in (1, 2):
    coefficients = mscn(y, window)
    b = BLOCK // scale
    scales.append([block_features(coefficients[i * b:(i + 1) * b, j * b:(j + 1) * b])
                   for j in range(cols) for i in range(rows)])
    if scale == 1:
      y = _half_scale(y)
  return np.concatenate([np.array(s) for s in scales], axis=1)


def niqe(image: np.ndarray) -> float:
  """NIQE of `image`: `[H, W, 3]` RGB or `[H, W]` gray, uint8 or float in [0, 255], both
  sides >= 192 px (ValueError otherwise). Lower is more natural (pristine photos about 3)."""
  features = niqe_features(image)
  mu_pristine, cov_pristine, _ = pristine_model()
  with np.errstate(invalid="ignore"):
    mu = np.nanmean(features, axis=0)
  complete = features[~np.isnan(features).any(axis=1)]
  cov = np.cov(complete, rowvar=False)
  d = mu_pristine - mu
  return float(np.sqrt(d @ np.linalg.pinv((cov_pristine + cov) / 2) @ d))
