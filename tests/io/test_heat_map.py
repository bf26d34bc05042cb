"""`pulse_jax.io.images.heat_map`: the spread maps' colour scale (perceptually ordered, fixed)."""
import numpy as np
import pytest

from pulse_jax.io import images

LUMA = np.array([0.2126, 0.7152, 0.0722])


def test_a_ramp_gets_brighter_from_dark_at_0_to_bright_at_vmax():
  vmax = images.SPREAD_VMAX
  ramp = np.linspace(0.0, vmax, 256).reshape(16, 16)
  out = images.heat_map(ramp, vmax)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8
  luma = out.reshape(-1, 3).astype(np.float64) @ LUMA
  # ordered (up to rounding each channel to 8 bits: half a level) over the full range
  assert np.all(np.diff(luma) > -0.5) and luma[-1] - luma[0] > 200
  assert np.all(np.diff(luma[::8]) > 0)
  np.testing.assert_array_equal(out[0, 0], images.HEAT_ANCHORS[0])
  np.testing.assert_array_equal(out[-1, -1], images.HEAT_ANCHORS[-1])
  # the anchors themselves are ordered: each colour brighter than the one before
  assert np.all(np.diff(images.HEAT_ANCHORS @ LUMA) > 0)


def test_out_of_range_and_nan_values():
  vmax = 0.2
  v = np.array([[-1.0, 0.0, vmax, 3 * vmax], [np.inf, -np.inf, np.nan, vmax / 2]])
  out = images.heat_map(v, vmax)
  dark, bright = images.HEAT_ANCHORS[0], images.HEAT_ANCHORS[-1]
  for (i, j), want in (((0, 0), dark), ((0, 1), dark), ((0, 2), bright), ((0, 3), bright),
                       ((1, 0), bright), ((1, 1), dark), ((1, 2), images.NAN_RGB)):
    np.testing.assert_array_equal(out[i, j], want, err_msg=str(v[i, j]))
  mid = out[1, 3].astype(np.float64) @ LUMA
  assert dark @ LUMA < mid < bright @ LUMA
  # the same value gives the same colour whatever else is in the map: a fixed scale
  np.testing.assert_array_equal(images.heat_map(v[:1, 3:], vmax)[0, 0], out[0, 3])


def test_bad_arguments():
  with pytest.raises(ValueError, match=r"\[H, W\]"):
    images.heat_map(np.zeros((2, 2, 3)), 1.0)
  for vmax in (0.0, -1.0, np.nan):
    with pytest.raises(ValueError, match="vmax"):
      images.heat_map(np.zeros((2, 2)), vmax)
