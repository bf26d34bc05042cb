"""The StyleGAN building blocks against their direct (textbook) formulations."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.nets import ops


def _conv(x, k, pad, lhs_dilation=(1, 1)):
  return jax.lax.conv_general_dilated(x, k, (1, 1), pad, lhs_dilation=lhs_dilation,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=jax.lax.Precision.HIGHEST)


def _fused_direct(x, k):
  """The reference's fused up-sampling conv: pad 3x3 -> 5x5, sum four 4x4 windows, transposed
  conv stride 2 padding 1 (= conv of the 2x-dilated input with the flipped kernel, padding 2)."""
  w = jnp.pad(k, ((1, 1), (1, 1), (0, 0), (0, 0)))
  w = w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]
  return _conv(x, w[::-1, ::-1], ((2, 2), (2, 2)), lhs_dilation=(2, 2))


@pytest.mark.parametrize("size,cin,cout", [(4, 8, 5), (8, 3, 7), (16, 4, 4)])
def test_upsample_conv_equals_direct_forms(size, cin, cout):
  kx, kk = jax.random.split(jax.random.key(size))
  x = jax.random.normal(kx, (2, size, size, cin))
  k = jax.random.normal(kk, (3, 3, cin, cout))
  nearest = _conv(ops.upscale_nearest_2x(x), k, ((1, 1), (1, 1)))
  np.testing.assert_allclose(ops.upsample_conv2d(x, k, "nearest"), nearest, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(ops.upsample_conv2d(x, k, "fused"), _fused_direct(x, k),
                             rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_upsample_conv_gradients_equal_direct_forms():
  x = jax.random.normal(jax.random.key(0), (1, 6, 6, 3))
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 2))
  for mode, direct in (("nearest", lambda x, k: _conv(ops.upscale_nearest_2x(x), k, ((1, 1),) * 2)),
                       ("fused", _fused_direct)):
    ours = jax.grad(lambda x, k: jnp.sum(jnp.sin(ops.upsample_conv2d(x, k, mode))), (0, 1))(x, k)
    ref = jax.grad(lambda x, k: jnp.sum(jnp.sin(direct(x, k))), (0, 1))(x, k)
    for a, b in zip(ours, ref):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_blur_and_instance_norm():
  x = jax.random.normal(jax.random.key(2), (2, 5, 7, 3))
  f = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
  depthwise = jnp.tile(jnp.asarray(f, jnp.float32)[:, :, None, None], (1, 1, 1, 3))
  direct = jax.lax.conv_general_dilated(x, depthwise, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=3)
  np.testing.assert_allclose(ops.blur_121(x), direct, rtol=1e-5, atol=1e-6)
  y = np.asarray(ops.instance_norm(x, 1e-5))
  xn = np.asarray(x, np.float64)
  ref = (xn - xn.mean((1, 2), keepdims=True)) / np.sqrt(xn.var((1, 2), keepdims=True) + 1e-5)
  np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


def test_prepared_convs_match_plain_convs_and_gradients():
  """The run-time (prepared) kernels give the same values and input gradients as lax's conv."""
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 4))
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 3))
  direct = lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
  w = ops.prepare_conv2d(k)
  assert w["kernel_t"].shape == (3, 3, 3, 4)
  np.testing.assert_allclose(ops.conv2d_prepared(x, w), direct(x, k), rtol=1e-5, atol=1e-5)
  f = lambda conv: lambda x, k: jnp.sum(jnp.cos(conv(x, k)))
  ours = jax.grad(f(ops.conv2d), (0, 1))(x, k)
  ref = jax.grad(f(direct), (0, 1))(x, k)
  for a, b in zip(ours, ref):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
  up = ops.prepare_upsample_conv2d(k, "fused")
  assert up["kernel"].shape == (2, 2, 2, 2, 4, 3) and up["kernel_t"].shape == (2, 2, 2, 2, 3, 4)
  np.testing.assert_allclose(ops.upsample_conv2d_prepared(x, up),
                             ops.upsample_conv2d(x, k, "fused"), rtol=1e-6, atol=1e-6)
