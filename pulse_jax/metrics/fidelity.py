"""Fidelity to a ground truth: PSNR and SSIM of two images (numpy only).

SSIM is Wang, Bovik, Sheikh, Simoncelli (IEEE TIP 2004): local means, variances and covariance
under an 11 x 11 Gaussian window (sigma 1.5, normalised to sum 1), K1 = 0.01, K2 = 0.03,
C1 = (K1 L)^2, C2 = (K2 L)^2 with L the data range, population (not sample) statistics, the
SSIM map over the window positions that lie wholly inside the image ("valid", no padding),
its mean per channel, and the channels' mean. No down-sampling of large images (the MATLAB
`ssim.m` wrapper's automatic step is not applied). This equals scikit-image's
`structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1, channel_axis=-1)`.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
  """`a`, `b` as float64 `[H, W, C]` (a `[H, W]` image gets C = 1); ValueError unless their
  shapes agree and are [H, W] or [H, W, C]."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.shape != b.shape:
    raise ValueError(f"images differ in shape: {a.shape} and {b.shape}")
  if a.ndim not in (2, 3):
    raise ValueError(f"images must be [H, W] or [H, W, C], got shape {a.shape}")
  if a.ndim == 2:
    a, b = a[..., None], b[..., None]
  return a, b


def psnr(a, b, data_range: float = 1.0) -> float:
  """Peak signal-to-noise ratio of `a` against `b` (`[H, W]` or `[H, W, C]`, same shape,
  values in [0, data_range]) in dB: `10 log10(data_range^2 / MSE)` over all pixels and
  channels; `inf` when the images are equal."""
  a, b = _pair(a, b)
  mse = float(np.mean((a - b) ** 2))
  if mse == 0.0:
    return float("inf")
  return float(10.0 * np.log10(data_range ** 2 / mse))


def gaussian_window_taps(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
  """The 1-D Gaussian taps `[size] float64` summing to 1 (the 2-D window is their outer
  product)."""
  x = np.arange(size) - (size - 1) / 2
  taps = np.exp(-0.5 * (x / sigma) ** 2)
  return taps / taps.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
  """Separable correlation of `x: [..., H, W]` with `taps: [k]` along H and W, valid
  positions only: `[..., H - k + 1, W - k + 1]`."""
  rows = sliding_window_view(x, len(taps), axis=-2) @ taps            # [..., H - k + 1, W]
  return sliding_window_view(rows, len(taps), axis=-1) @ taps


def ssim_map(a, b, data_range: float = 1.0) -> np.ndarray:
  """The SSIM map of `a` against `b` (`[H, W]` or `[H, W, C]`, same shape, both sides >= 11):
  `[H - 10, W - 10, C] float64`, one value per window position and channel."""
  a, b = _pair(a, b)
  if min(a.shape[:2]) < SSIM_WINDOW:
    raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW} x {SSIM_WINDOW} pixels, "
                     f"got {a.shape[0]} x {a.shape[1]}")
  a, b = np.moveaxis(a, -1, 0), np.moveaxis(b, -1, 0)              # [C, H, W]
  local = _filter_valid(np.stack([a, b, a * a, b * b, a * b]), gaussian_window_taps())
  mu_a, mu_b, mean_aa, mean_bb, mean_ab = local                     # each [C, H - 10, W - 10]
  var_a, var_b = mean_aa - mu_a * mu_a, mean_bb - mu_b * mu_b
  cov = mean_ab - mu_a * mu_b
  c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
  ssim_chw = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
              / ((mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)))
  return np.moveaxis(ssim_chw, 0, -1)


def ssim(a, b, data_range: float = 1.0) -> float:
  """Mean SSIM of `a` against `b`: `[H, W]` or `[H, W, C]` float images in [0, data_range]
  (default [0, 1]), same shape, both sides >= 11 px; per channel, then averaged over the
  channels. 1 for equal images."""
  return float(np.mean(ssim_map(a, b, data_range).mean(axis=(0, 1))))
