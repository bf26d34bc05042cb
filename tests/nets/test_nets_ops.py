"""The shared network ops (`pulse_jax.nets.ops`, `pulse_jax.nets.upfirdn`) that StyleGAN v1, 2
and 3 all use, against direct formulations; and the configs' shared dict round trip."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.nets import ops
from pulse_jax.nets import stylegan1
from pulse_jax.nets import stylegan2
from pulse_jax.nets import stylegan3
from pulse_jax.nets import upfirdn

HIGHEST = jax.lax.Precision.HIGHEST


def _direct_upfirdn(x, f2d, up, down, padding, gain):
  """Zero insertion, padding and a depthwise true convolution with the 2-D filter (jnp, so
  JAX differentiates it itself). x: [B, H, W, C]; padding (x0, x1, y0, y1)."""
  px0, px1, py0, py1 = padding
  x = jax.lax.pad(x, 0.0, ((0, 0, 0), (py0, py1 + up - 1, up - 1), (px0, px1 + up - 1, up - 1),
                           (0, 0, 0)))
  c = x.shape[-1]
  k = jnp.broadcast_to((f2d[::-1, ::-1] * gain)[:, :, None, None], f2d.shape + (1, c))
  return jax.lax.conv_general_dilated(x, k, (down, down), "VALID",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      feature_group_count=c, precision=HIGHEST)


@pytest.mark.slow
@pytest.mark.parametrize("up,down,padding", [(1, 1, (1, 2, 0, 1)), (2, 1, (2, 1, 2, 1)),
                                             (1, 2, (1, 1, 1, 1)), (2, 3, (3, -1, 0, 2))])
def test_separable_upfirdn2d_and_its_gradient_equal_the_direct_form(up, down, padding):
  taps = np.array([0.1, 0.5, 0.3, 0.2, -0.1], np.float32)
  x = jax.random.normal(jax.random.key(up * 10 + down), (2, 9, 8, 3))
  got = lambda x: upfirdn.upfirdn2d(x, taps, up, down, padding, gain=3.0)
  want = lambda x: _direct_upfirdn(x, jnp.outer(taps, taps), up, down, padding, 3.0)
  np.testing.assert_allclose(got(x), want(x), rtol=1e-5, atol=1e-5)
  cot = jax.random.normal(jax.random.key(7), want(x).shape)
  grad = lambda fn: jax.grad(lambda x: jnp.sum(fn(x) * cot))(x)
  np.testing.assert_allclose(grad(got), grad(want), rtol=1e-5, atol=1e-5)


def test_two_dimensional_and_identity_filters():
  x = jax.random.normal(jax.random.key(1), (1, 6, 7, 2))
  f2d = jax.random.uniform(jax.random.key(2), (3, 3))
  np.testing.assert_allclose(upfirdn.upfirdn2d(x, f2d, 2, 1, (1, 1, 1, 1), gain=2.0),
                             _direct_upfirdn(x, f2d, 2, 1, (1, 1, 1, 1), 2.0), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_array_equal(upfirdn.upfirdn2d(x, None, down=2), x[:, ::2, ::2])
  np.testing.assert_array_equal(upfirdn.upfirdn2d(x, None, padding=1)[:, 1:-1, 1:-1], x)


def test_upsample2d_keeps_a_constant_image_constant_inside():
  x = jnp.full((1, 6, 6, 1), 2.5)
  y = upfirdn.upsample2d(x, (1, 3, 3, 1))
  assert y.shape == (1, 12, 12, 1)
  np.testing.assert_allclose(y[:, 2:-2, 2:-2], 2.5, rtol=1e-6)
  np.testing.assert_allclose(upfirdn.downsample2d(x, (1, 3, 3, 1))[:, 1:-1, 1:-1], 2.5, rtol=1e-6)


def test_bias_act_activations_and_leaky_relu_inverse():
  x = jnp.array([[-2.0, -0.5, 0.0, 0.5, 300.0]])
  b = jnp.array([0.5, 0.0, 0.0, -1.0, 0.0])
  lrelu = np.where(x + b >= 0, x + b, (x + b) * 0.2) * math.sqrt(2)
  np.testing.assert_array_equal(ops.bias_act(x, b, "lrelu"), lrelu)
  np.testing.assert_array_equal(ops.bias_act(x, b, "lrelu", clamp=256), np.clip(lrelu, -256, 256))
  np.testing.assert_array_equal(ops.bias_act(x, None, "lrelu", alpha=0.5, gain=1.0),
                                np.where(x >= 0, x, x * 0.5))
  np.testing.assert_array_equal(ops.bias_act(x, b, "relu"), np.maximum(x + b, 0) * math.sqrt(2))
  np.testing.assert_array_equal(ops.bias_act(x), x)
  np.testing.assert_allclose(ops.leaky_relu_inverse(ops.leaky_relu(x)), x, rtol=1e-7)


def test_dense_is_the_equalised_lr_layer():
  p = {"kernel": jax.random.normal(jax.random.key(3), (4, 3)), "bias": jnp.arange(3.0)}
  x = jax.random.normal(jax.random.key(4), (2, 4))
  want = x @ (p["kernel"] * (0.01 / 2)) + p["bias"] * 0.01
  np.testing.assert_allclose(ops.dense(p, x, 0.01, HIGHEST), want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(ops.dense(p, x), x @ (p["kernel"] / 2) + p["bias"], rtol=1e-6)


@pytest.mark.parametrize("precision", [None, HIGHEST])
def test_conv_nhwc_gradient_is_the_plain_convs(precision):
  x = jax.random.normal(jax.random.key(5), (2, 6, 5, 3))
  k = jax.random.normal(jax.random.key(6), (3, 3, 3, 4))
  pad = ((2, 0), (1, 1))
  plain = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), pad, dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
  ours = lambda x, k: ops.conv_nhwc(x, k, ops.transpose_kernel(k), pad, precision)
  np.testing.assert_array_equal(ours(x, k), plain(x, k))
  loss = lambda fn: jax.grad(lambda x, k: jnp.sum(fn(x, k) ** 2), argnums=(0, 1))(x, k)
  for a, b in zip(loss(ours), loss(plain)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [stylegan1.StyleGANConfig(resolution=64),
                                    stylegan2.Stylegan2Config(img_resolution=64),
                                    stylegan3.Stylegan3Config(img_resolution=64, channel_base=2048)])
def test_configs_round_trip_and_name_unknown_fields(config):
  cls = type(config)
  assert cls.from_dict(config.to_dict()) == config
  with pytest.raises(ValueError, match=rf"Unknown {cls.__name__} fields \['bogus'\]; valid"):
    cls.from_dict({**config.to_dict(), "bogus": 1})
