"""pulse_jax.metrics.fidelity: PSNR and SSIM by their properties, a hand-computed case, and
scikit-image's implementations where it is installed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pulse_jax.metrics.fidelity import gaussian_window_taps, psnr, ssim, ssim_map


def _pair(shape, noise=0.1, seed=0):
  rng = np.random.default_rng(seed)
  a = rng.random(shape)
  return a, np.clip(a + noise * rng.standard_normal(shape), 0, 1)


def test_psnr_of_a_known_error():
  a = np.zeros((8, 8, 3))
  assert psnr(a, a + 0.1) == pytest.approx(20.0)            # MSE 0.01 -> 20 dB
  assert psnr(a, a) == math.inf
  x, y = _pair((16, 16, 3))
  assert psnr(x * 255, y * 255, data_range=255) == pytest.approx(psnr(x, y))
  assert psnr(x, y) == psnr(y, x)


def test_ssim_of_equal_and_of_constant_images():
  x, _ = _pair((20, 24, 3))
  assert ssim(x, x) == pytest.approx(1.0, abs=1e-12)
  # Constant images: zero variances, so SSIM = (2 a b + C1) / (a^2 + b^2 + C1) everywhere.
  c1 = 0.01 ** 2
  expected = (2 * 0.2 * 0.4 + c1) / (0.2 ** 2 + 0.4 ** 2 + c1)
  assert ssim(np.full((12, 12), 0.2), np.full((12, 12), 0.4)) == pytest.approx(expected, rel=1e-12)


def test_ssim_of_one_window_by_hand():
  """An 11 x 11 image pair has one window position: the weighted statistics written out."""
  a, b = _pair((11, 11), noise=0.2, seed=3)
  g = np.exp(-0.5 * ((np.arange(11) - 5) / 1.5) ** 2)
  w = np.outer(g, g) / np.outer(g, g).sum()
  mu_a, mu_b = (w * a).sum(), (w * b).sum()
  var_a, var_b = (w * (a - mu_a) ** 2).sum(), (w * (b - mu_b) ** 2).sum()
  cov = (w * (a - mu_a) * (b - mu_b)).sum()
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  expected = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
              / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2)))
  assert ssim_map(a, b).shape == (1, 1, 1)
  assert ssim(a, b) == pytest.approx(expected, rel=1e-12)


def test_ssim_averages_the_channels_and_is_symmetric():
  a, b = _pair((16, 18, 3), seed=1)
  per_channel = [ssim(a[..., c], b[..., c]) for c in range(3)]
  assert ssim(a, b) == pytest.approx(np.mean(per_channel), rel=1e-12)
  assert ssim(a, b) == pytest.approx(ssim(b, a), rel=1e-12)
  assert ssim(a, b) > ssim(*_pair((16, 18, 3), noise=0.3, seed=1))   # more noise, lower SSIM


def test_the_window_is_11_taps_sigma_1_5():
  taps = gaussian_window_taps()
  assert len(taps) == 11 and abs(taps.sum() - 1) < 1e-15
  assert taps[5] / taps[6] == pytest.approx(math.exp(0.5 / 1.5 ** 2))


def test_bad_shapes_are_refused():
  with pytest.raises(ValueError, match="differ"):
    ssim(np.zeros((12, 12)), np.zeros((12, 13)))
  with pytest.raises(ValueError, match="at least 11"):
    ssim(np.zeros((10, 40)), np.zeros((10, 40)))
  with pytest.raises(ValueError):
    psnr(np.zeros(5), np.zeros(5))


@pytest.mark.parametrize("shape", [(32, 40, 3), (48, 33), (11, 64, 1)])
def test_agrees_with_scikit_image(shape):
  metrics = pytest.importorskip("skimage.metrics")
  a, b = _pair(shape, seed=2)
  channel_axis = -1 if len(shape) == 3 else None
  theirs = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                         use_sample_covariance=False, data_range=1,
                                         channel_axis=channel_axis)
  assert ssim(a, b) == pytest.approx(theirs, abs=1e-12)
  assert psnr(a, b) == pytest.approx(metrics.peak_signal_noise_ratio(a, b, data_range=1),
                                     rel=1e-12)
