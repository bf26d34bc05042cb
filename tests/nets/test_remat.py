"""Rematerialisation that XLA cannot undo (`pulse_jax.nets.remat`), and what it saves (issue 14 §4).

The memory checks read XLA's buffer assignment of the compiled search chunk (nothing is
allocated; deterministic for a given jax version) on a small StyleGAN (128 px, 8..128 channels).
"""
import pytest
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.runtime import compile
from pulse_jax.nets import remat
from pulse_jax.generators import Generator
from pulse_jax.search.config import SearchConfig
from pulse_jax.nets.stylegan1 import StyleGANConfig, synthesis_param_shapes


def _layer(consts, x, s):
  """A small conv block: consts {'k': [3, 3, C, C]}, x [N, H, W, C], s [N, C]."""
  y = jax.lax.conv_general_dilated(x, consts["k"], (1, 1), "SAME",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.tanh(y * s[:, None, None, :]) + x


def test_recompute_in_backward_matches_values_and_gradients():
  k = jax.random.normal(jax.random.key(0), (3, 3, 4, 4)) * 0.3
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
  s = jax.random.normal(jax.random.key(2), (2, 4))
  wrapped = remat.recompute_in_backward(_layer)
  np.testing.assert_array_equal(wrapped({"k": k}, x, s), _layer({"k": k}, x, s))
  loss = lambda f: lambda c, x, s: jnp.sum(f(c, f(c, x, s), s) ** 2)
  want = jax.grad(loss(_layer), argnums=(0, 1, 2))({"k": k}, x, s)
  got = jax.grad(loss(wrapped), argnums=(0, 1, 2))({"k": k}, x, s)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
  got_jit = jax.jit(jax.grad(loss(wrapped), argnums=1))({"k": k}, x, s)
  np.testing.assert_allclose(got_jit, want[1], rtol=1e-6, atol=1e-6)


def test_depend_on_changes_no_value_and_no_gradient():
  rows = {"a": jnp.arange(6.0).reshape(2, 3), "b": -jnp.ones((2, 1, 2))}
  other = jnp.array([[5.0, 1.0], [-2.0, 3.0]])
  out = remat.depend_on(rows, other)
  for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(rows)):
    np.testing.assert_array_equal(a, b)
  grad = jax.grad(lambda o: jnp.sum(remat.depend_on(rows, o)["a"]))(other)
  np.testing.assert_array_equal(grad, jnp.zeros_like(other))
  # A NaN stays in its own row.
  poisoned = remat.depend_on(rows, other.at[1, 0].set(jnp.nan))["a"]
  assert np.isfinite(poisoned[0]).all() and np.isnan(poisoned[1]).all()


@functools.lru_cache(maxsize=None)
def _temp_mib(remat_policy: str, restarts: int, chunk_size: int) -> float:
  cfg = StyleGANConfig(resolution=128, fmap_base=2048, fmap_max=128)
  params = {"synthesis": synthesis_param_shapes(cfg),
            "gaussian_fit": {k: jax.ShapeDtypeStruct((512,), jnp.float32) for k in ("mean", "std")}}
  compiled = compile.compiled_chunk(
      Generator("stylegan", cfg, remat=remat_policy), params,
      SearchConfig(bad_noise_layers=str(cfg.num_layers - 1)), rows=restarts, lr_size=16,
      chunk_size=chunk_size)
  return compiled.memory_analysis().temp_size_in_bytes / 2 ** 20


@pytest.mark.slow
def test_remat_block_keeps_one_block_alive():
  """--remat ('block') needs less than 0.6x the activations of no remat (measured 0.46x here;
  at 1024 px 0.38x: experiments/results/cpu_memory_2026-12-01.md). With plain
  `jax.checkpoint`, XLA:CPU scheduled every block's recomputation early and it needed 1.05x."""
  none, block = _temp_mib("none", 4, 2), _temp_mib("block", 4, 2)
  assert block < 0.6 * none, (block, none)
  assert _temp_mib("epilogue", 4, 2) < 0.6 * none


@pytest.mark.slow
def test_search_loop_hoists_no_noise_product():
  """A loop of 2 steps needs no more than one step: XLA does not hoist the loop-invariant
  noise_weight x fixed-noise products out of the loop as [N, H, W, C] buffers (it did: +15%
  here, ~190 MB per restart at 1024 px)."""
  assert _temp_mib("none", 4, 2) <= 1.02 * _temp_mib("none", 4, 1)
