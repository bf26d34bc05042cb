"""The ILO search's pieces beyond tests/search/test_ilo_core.py: the l1-ball projection in
float64 (exact to float64 rounding, as the sort-based algorithm is), the projection of a pytree
activation (StyleGAN2's {'x', 'img'}), layer options and phases at their edges, and a search on
a tiny random DCGAN run in chunks whose boundaries fall inside ILO phases (the carry holds the
whole ILO state: same trace and kept iterate as in one chunk).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import generators
from pulse_jax.nets import dcgan
from pulse_jax.search import ilo, program
from pulse_jax.search.config import SearchConfig
from support.ilo_cases import tiny_dcgan


def _theta_by_bisection(v: np.ndarray, r: float) -> float:
  """float64: theta with sum(max(|v| - theta, 0)) == r, by bisection (no sort)."""
  lo, hi = 0.0, float(np.abs(v).max())
  for _ in range(200):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if np.maximum(np.abs(v) - mid, 0).sum() > r else (lo, mid)
  return (lo + hi) / 2


def test_l1_projection_in_float64_is_exact_to_rounding():
  rng = np.random.RandomState(1)
  v = rng.randn(4, 257) * np.array([[1.0], [1e-3], [1e3], [1.0]])
  norms = np.abs(v).sum(1)
  radius = norms * np.array([0.3, 0.01, 0.9, 1.5])        # the last row: inside
  with jax.enable_x64(True):
    x = np.asarray(ilo.project_l1_ball(jnp.asarray(v), jnp.asarray(radius)))
  assert x.dtype == np.float64
  np.testing.assert_array_equal(x[3], v[3])
  for i in range(3):
    assert abs(np.abs(x[i]).sum() - radius[i]) <= 1e-12 * radius[i]
    theta = _theta_by_bisection(v[i], radius[i])
    expected = np.sign(v[i]) * np.maximum(np.abs(v[i]) - theta, 0)
    np.testing.assert_allclose(x[i], expected, rtol=0, atol=1e-12 * np.abs(v[i]).max())
    assert np.all(np.sign(x[i][x[i] != 0]) == np.sign(v[i][x[i] != 0]))  # never flips a sign


def test_a_pytree_activation_is_projected_as_one_vector():
  rng = np.random.RandomState(2)
  config = SearchConfig(ilo=True, ilo_radius=0.05)
  centre = {"x": jnp.asarray(rng.randn(3, 4, 4, 8), jnp.float32),
            "img": jnp.asarray(rng.randn(3, 4, 4, 3), jnp.float32)}
  far = jax.tree.map(lambda c: c + jnp.asarray(rng.randn(*c.shape), jnp.float32), centre)
  near = jax.tree.map(lambda c: c * (1 + 1e-3), centre)
  out = ilo.project(config, far, centre)
  assert jax.tree.structure(out) == jax.tree.structure(centre)
  assert all(o.shape == c.shape and o.dtype == c.dtype
             for o, c in zip(jax.tree.leaves(out), jax.tree.leaves(centre)))
  np.testing.assert_allclose(ilo.moved(out, centre), 0.05, rtol=1e-5)   # onto the sphere
  for a, b in zip(jax.tree.leaves(ilo.project(config, near, centre)), jax.tree.leaves(near)):
    np.testing.assert_array_equal(a, b)                                # inside: unchanged
  # one ball over both leaves: the joint norm, not each leaf's
  flat = lambda t: np.concatenate([np.asarray(t[k]).reshape(3, -1) for k in ("img", "x")], 1)
  np.testing.assert_allclose(np.abs(flat(out) - flat(centre)).sum(1),
                             0.05 * np.abs(flat(centre)).sum(1), rtol=1e-5)


def test_layer_options_and_phases_at_their_edges():
  g = generators.Generator("dcgan", dcgan.DCGANConfig(nz=8, ngf=4))   # no weights needed
  on = SearchConfig(steps=4, ilo=True, ilo_steps=3)
  assert ilo.layers(dataclasses.replace(on, ilo_layers="b8"), g) == ("b8",)
  assert ilo.layers(dataclasses.replace(on, ilo_layers=" b16 , b32 "), g) == ("b16", "b32")
  assert ilo.layers(dataclasses.replace(on, ilo=False, ilo_layers="nonsense"), g) == ()
  with pytest.raises(ValueError, match="'b2'.*cut points are b4, b8, b16, b32"):
    ilo.layers(dataclasses.replace(on, ilo_layers="b2"), g)
  with pytest.raises(ValueError, match="distinct cut points in network order"):
    ilo.layers(dataclasses.replace(on, ilo_layers="b8,b8"), g)
  with pytest.raises(ValueError, match="not a cut point"):
    program.Problem(g, dataclasses.replace(on, ilo_layers="b64"), 4)  # refused up front
  assert int(ilo.phase_at((), jnp.int32(100))) == 0 and int(ilo.kept_phase((), jnp.int32(9))) == 0
  starts = ilo.phase_starts(on, 3)                     # (4, 7, 10): total 13 steps
  assert starts == (4, 7, 10)
  # step t runs in the phase of the last start <= t; after n steps the kept iterate is in the
  # phase of the last start < n (entering a layer happens at the start of its first step)
  steps = jnp.arange(14, dtype=jnp.int32)
  got = np.asarray(jax.vmap(lambda t: jnp.stack([ilo.phase_at(starts, t),
                                                  ilo.kept_phase(starts, t)]))(steps))
  want = [[sum(t >= s for s in starts), sum(t > s for s in starts)] for t in range(14)]
  np.testing.assert_array_equal(got, want)


def _run(problem, params, ref, chunks: int):
  n = ref.shape[0]
  state = program.init_state(problem, jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32))
  traces = []
  for _ in range(chunks):
    state, trace = program.run_chunk(problem, params, state, ref)
    traces.append(trace)
  return state, {k: np.concatenate([np.asarray(t[k]) for t in traces]) for k in traces[0]}


@pytest.mark.slow   # two compiled chunk programs: 12 s on 2 busy CPU cores
def test_chunks_that_end_inside_ilo_phases_give_the_same_search():
  g, params = tiny_dcgan()
  config = SearchConfig(steps=4, ilo=True, ilo_steps=3, ilo_layers="b4,b8", loss_str="100*L2",
                        eps=1e-6, learning_rate=0.2, ilo_radius=0.05)
  ref = jnp.asarray(np.random.RandomState(0).rand(2, 3, 16, 16).astype(np.float32))
  whole = program.Problem(g, config, 4, chunk_size=10)
  assert whole.total_steps == 10 and whole.ilo_starts == (4, 7)
  one = _run(whole, params, ref, 1)
  parts = _run(dataclasses.replace(whole, chunk_size=5), params, ref, 2)   # ends at step 5
  assert int(parts[0].step) == int(one[0].step) == 10
  for k in one[1]:
    np.testing.assert_allclose(parts[1][k], one[1][k], rtol=1e-6, err_msg=k)
  for a, b in zip(jax.tree.leaves(parts[0].ilo.best_acts), jax.tree.leaves(one[0].ilo.best_acts)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # the kept image renders from b8's kept activation, which lies in b8's ball
  state = parts[0]
  assert np.all(np.asarray(ilo.moved(state.ilo.best_acts["b8"], state.ilo.centres["b8"]))
                <= 0.05 * (1 + 1e-5))
  values = program.start_values_of(whole, state)
  assert set(values) == {"latent", "ilo.b8"} and values["ilo.b8"].shape == (2, 8, 8, 16)
