"""pulse_jax.metrics.upsampling: the nearest and bicubic baselines (properties, and PIL's
bicubic away from the borders)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pulse_jax.metrics.upsampling import bicubic, bicubic_upsample_matrix, nearest


def _lr(shape=(6, 5, 3), seed=0):
  return np.random.default_rng(seed).random(shape)


def test_nearest_repeats_each_pixel():
  lr = _lr()
  hr = nearest(lr, 4)
  assert hr.shape == (24, 20, 3) and hr.dtype == np.float32
  np.testing.assert_array_equal(hr[4 * 2:4 * 3, 4 * 3:4 * 4], np.broadcast_to(
      lr[2, 3].astype(np.float32), (4, 4, 3)))
  np.testing.assert_array_equal(nearest(lr, 1), lr.astype(np.float32))
  assert nearest(lr[..., 0], 2).shape == (12, 10)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bicubic_equals_pil_away_from_the_borders(factor):
  lr = _lr((10, 9), seed=factor)
  ours = bicubic(lr, factor)
  pil = np.asarray(Image.fromarray(lr.astype(np.float32), "F").resize(
      (9 * factor, 10 * factor), Image.BICUBIC))
  b = 2 * factor
  np.testing.assert_allclose(ours[b:-b, b:-b], np.clip(pil, 0, 1)[b:-b, b:-b], atol=1e-6)


def test_bicubic_keeps_constants_and_ramps_and_stays_in_range():
  np.testing.assert_allclose(bicubic(np.full((4, 4, 3), 0.3), 4), 0.3, atol=1e-7)
  ramp = np.tile(np.linspace(0.1, 0.9, 8)[None, :], (5, 1))       # along W
  hr = bicubic(ramp, 4)
  step = 0.8 / 7 / 4                                               # per HR pixel
  np.testing.assert_allclose(np.diff(hr[:, 8:-8], axis=1), step, atol=1e-6)   # Keys: exact on lines
  noisy = bicubic(np.random.default_rng(1).integers(0, 2, (8, 8)).astype(float), 4)
  assert noisy.min() >= 0 and noisy.max() <= 1                     # clipped overshoot


def test_bicubic_rows_sum_to_one_and_edges_replicate():
  m = bicubic_upsample_matrix(5, 4)
  assert m.shape == (20, 5)
  np.testing.assert_allclose(m.sum(axis=1), 1, atol=1e-15)
  lr = _lr((5, 5, 2))
  hr = bicubic(np.pad(lr, ((2, 2), (2, 2), (0, 0)), mode="edge"), 4)
  np.testing.assert_allclose(bicubic(lr, 4), hr[8:-8, 8:-8], atol=1e-6)


def test_bad_factors_are_refused():
  for factor in (0, 1.5, True, -2):
    with pytest.raises(ValueError):
      bicubic(_lr(), factor)
  with pytest.raises(ValueError):
    nearest(np.zeros((2, 2, 2, 2)), 2)
