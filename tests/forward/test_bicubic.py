"""pulse_jax.forward.bicubic against the reference's fixtures and an independent float64 numpy version."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.forward.bicubic import bicubic_kernel, downsample, downsample_matrix
from support.harness import fixture_path


def _fixture(name):
  """The reference fixture `name`'s arrays (np.load); skips when absent."""
  return np.load(fixture_path(name))


def _keys64(x, a=-0.5):
  x = np.abs(x)
  if x <= 1:
    return (a + 2) * x**3 - (a + 3) * x**2 + 1
  if x < 2:
    return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
  return 0.0


def _numpy_down(x, f):
  """torch semantics written from the reference notes: reflect pad, strided 1-D filter, H then W."""
  size = 4 * f
  k = np.array([_keys64((i - np.floor(size / 2) + 0.5) / f) for i in range(size)])
  k /= k.sum()
  lo, hi = (size - f) // 2, size - f - (size - f) // 2
  for axis in (-2, -1):
    pad = [(0, 0)] * x.ndim
    pad[axis] = (lo, hi)
    xp = np.moveaxis(np.pad(x, pad, mode="reflect"), axis, -1)
    n = x.shape[axis] // f
    out = sum(k[j] * xp[..., j : j + f * (n - 1) + 1 : f] for j in range(size))
    x = np.moveaxis(out, -1, axis)
  return x


def test_kernel_is_normalised_symmetric_keys():
  for f in (1, 2, 3, 8):
    k = bicubic_kernel(f)
    assert k.shape == (4 * f,) and k.dtype == np.float32
    np.testing.assert_allclose(k.sum(), 1.0, rtol=1e-6)
    np.testing.assert_allclose(k, k[::-1], atol=1e-7)
  k2 = np.array([_keys64((i - 4 + 0.5) / 2) for i in range(8)])
  np.testing.assert_allclose(bicubic_kernel(2), k2 / k2.sum(), rtol=1e-6)


@pytest.mark.parametrize("factor", [2, 4, 8, 16, 32, 64])
def test_matches_reference_fixture(factor):
  data = _fixture("bicubic.npz")
  got = np.asarray(downsample(jnp.asarray(data["x"]), factor))
  want = data[f"down_{factor}"]
  assert got.shape == want.shape == (2, 3, 256 // factor, 256 // factor)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factor,shape", [(2, (2, 3, 8, 12)), (3, (2, 2, 1, 15, 30)), (5, (1, 4, 20, 10))])
def test_matches_numpy_for_any_factor_shape_and_channels(factor, shape):
  x = np.random.default_rng(factor).uniform(size=shape)
  got = downsample(jnp.asarray(x, jnp.float32), factor)
  assert got.shape == shape[:-2] + (shape[-2] // factor, shape[-1] // factor)
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), _numpy_down(x, factor), rtol=1e-5, atol=1e-6)


def test_factor_one_is_identity():
  x = jnp.arange(2 * 3 * 4 * 4, dtype=jnp.float32).reshape(2, 3, 4, 4)
  np.testing.assert_array_equal(np.asarray(downsample(x, 1)), np.asarray(x))


def test_rows_sum_to_one_and_wide_padding_reflects():
  for n, f in ((256, 2), (64, 64), (12, 3)):
    m = downsample_matrix(n, f)
    assert m.shape == (n // f, n)
    # Each row holds every tap once (reflected taps folded in): its sum is the float64 sum of
    # the reference's float32 taps, 1 within float32 rounding.
    taps = np.sum(bicubic_kernel(f).astype(np.float64))
    np.testing.assert_allclose(m.sum(axis=1), taps, rtol=1e-13)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-7)


@pytest.mark.parametrize("factor", [2, 3, 5, 8, 64])
def test_taps_are_the_reference_float32_computation(factor):
  """The reference computes its taps elementwise in float32 (torch scalars) and normalises by a
  float32 sum; written out here with Python floats rounded to float32 after every operation."""
  r = lambda v: float(np.float32(v))
  size = 4 * factor
  raw = []
  for i in range(size):
    x = abs(r(r(r(i - r(np.floor(size / 2))) + 0.5) / factor))
    x2 = r(x * x)
    x3 = r(x2 * x)
    if x <= 1:
      v = r(r(r(1.5 * x3) - r(2.5 * x2)) + 1)
    elif x < 2:
      v = r(r(r(r(-0.5 * x3) - r(-2.5 * x2)) + r(-4.0 * x)) + 2.0)
    else:
      v = 0.0
    raw.append(v)
  raw = np.asarray(raw, np.float32)
  want = raw / raw.sum(dtype=np.float32)
  np.testing.assert_array_equal(bicubic_kernel(factor), want)
  np.testing.assert_allclose(want, [_keys64((i - np.floor(size / 2) + 0.5) / factor) for i in range(size)]
                             / np.sum([_keys64((i - np.floor(size / 2) + 0.5) / factor) for i in range(size)]),
                             rtol=1e-6, atol=1e-7)


def test_jit_and_gradient_are_the_adjoint():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 3, 32, 32)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(2, 3, 4, 4)), jnp.float32)
  down = jax.jit(downsample, static_argnums=1)
  np.testing.assert_allclose(np.asarray(down(x, 8)), np.asarray(downsample(x, 8)), rtol=1e-6, atol=1e-7)
  out, vjp = jax.vjp(lambda v: downsample(v, 8), x)
  (xt,) = vjp(y)
  np.testing.assert_allclose(float(jnp.vdot(out, y)), float(jnp.vdot(x, xt)), rtol=1e-5)
  grad = jax.grad(lambda v: jnp.sum(downsample(v, 8) * y))(x)
  np.testing.assert_allclose(np.asarray(grad), np.asarray(xt), rtol=1e-6, atol=1e-7)


def test_rejects_bad_factor_and_shape():
  x = jnp.zeros((1, 3, 12, 12))
  for bad in (0, -2, 2.5):
    with pytest.raises(ValueError, match="factor"):
      downsample(x, bad)
  with pytest.raises(ValueError, match="multiple"):
    downsample(x, 5)
