"""The ILO search's core (`pulse_jax/search/ilo.py`, `search/program.py`): the exact l1-ball
projection, the layer options, the phases, and a search on a tiny random DCGAN and on every
family: entering a layer keeps the kept image, activations stay in their balls, the kept images
re-render from the saved activation."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax.search import ilo, program
from pulse_jax.search.config import SearchConfig
from support.ilo_cases import split_cases, tiny_dcgan


def _theta_by_bisection(v: np.ndarray, r: float) -> float:
  """float64: the threshold theta with sum(max(|v| - theta, 0)) == r (independent of the sort)."""
  lo, hi = 0.0, float(np.abs(v).max())
  for _ in range(200):
    mid = (lo + hi) / 2
    if np.maximum(np.abs(v) - mid, 0).sum() > r:
      lo = mid
    else:
      hi = mid
  return (lo + hi) / 2


def test_l1_projection_is_exact():
  rng = np.random.RandomState(0)
  v = rng.randn(5, 300).astype(np.float32)
  norms = np.abs(v).sum(1)
  radius = np.array([norms[0] * 2, norms[1] * 0.5, norms[2] * 0.05, 0.0, norms[4] * 1.001],
                    np.float32)
  x = np.asarray(ilo.project_l1_ball(jnp.asarray(v), jnp.asarray(radius)))
  np.testing.assert_array_equal(x[0], v[0])              # inside: unchanged
  np.testing.assert_array_equal(x[4], v[4])              # just inside: unchanged
  np.testing.assert_array_equal(x[3], np.zeros_like(v[3]))  # radius 0
  for i in (1, 2):
    assert abs(np.abs(x[i]).sum() - radius[i]) <= 1e-5 * radius[i]
    theta = _theta_by_bisection(v[i].astype(np.float64), float(radius[i]))
    expected = np.sign(v[i]) * np.maximum(np.abs(v[i]) - theta, 0)
    np.testing.assert_allclose(x[i], expected, atol=1e-5 * np.abs(v[i]).max())
    # optimality: no point of the ball is closer to v
    for _ in range(20):
      y = rng.randn(300)
      y *= radius[i] / np.abs(y).sum() * rng.rand()
      assert np.linalg.norm(v[i] - x[i]) <= np.linalg.norm(v[i] - y) + 1e-5


def test_layers_phases_and_errors():
  g, _ = tiny_dcgan()
  off = SearchConfig(steps=5)
  assert ilo.layers(off, g) == ()
  on = dataclasses.replace(off, ilo=True, ilo_steps=3)
  assert ilo.layers(on, g) == g.ilo_default_layers == ("b4", "b8")
  assert ilo.layers(dataclasses.replace(on, ilo_layers="b8,b16"), g) == ("b8", "b16")
  with pytest.raises(ValueError, match="not a cut point.*b4, b8, b16, b32"):
    ilo.layers(dataclasses.replace(on, ilo_layers="b4,b64"), g)
  with pytest.raises(ValueError, match="network order"):
    ilo.layers(dataclasses.replace(on, ilo_layers="b8,b4"), g)
  starts = ilo.phase_starts(on, 2)
  assert starts == (5, 8)
  assert [int(ilo.phase_at(starts, jnp.int32(t))) for t in (0, 4, 5, 7, 8, 10)] == [0, 0, 1, 1, 2, 2]
  assert [int(ilo.kept_phase(starts, jnp.int32(t))) for t in (0, 5, 6, 8, 9, 11)] == [0, 0, 1, 1, 2, 2]
  assert program.Problem(g, on, 4).total_steps == 11


def test_search_enters_each_layer_without_changing_the_kept_image():
  g, params = tiny_dcgan()
  config = SearchConfig(steps=6, ilo=True, ilo_steps=4, loss_str="100*L2", eps=1e-6,
                        learning_rate=0.2, ilo_radius=0.05, ilo_learning_rate=0.05)
  problem = program.Problem(g, config, 4, chunk_size=14)
  n = 3
  ref = jnp.asarray(np.random.RandomState(0).rand(n, 3, 16, 16).astype(np.float32))
  state = program.init_state(problem, jnp.zeros((n,), jnp.int32), jnp.arange(n, dtype=jnp.int32))
  state, trace = program.run_chunk(problem, params, state, ref)
  total = np.asarray(trace["TOTAL"])                    # [14, N]
  kept = np.minimum.accumulate(total, axis=0)
  for start in problem.ilo_starts:                      # the first step of a layer: its loss is
    np.testing.assert_allclose(total[start], kept[start - 1], rtol=2e-5)  # the kept one's
  assert np.all(np.diff(kept, axis=0) <= 0)
  st = state.ilo
  for layer in problem.ilo_layers:
    moved = np.asarray(ilo.moved(st.acts[layer], st.centres[layer]))
    assert np.all(moved <= config.ilo_radius * (1 + 1e-4)), moved
  assert np.any(np.asarray(ilo.moved(st.acts["b8"], st.centres["b8"])) > 0)
  # the kept images render from the kept activation of the last layer entered
  prepared = g.prepare(params)
  out = program.best_images(problem, prepared, state, ref)
  w = g.latent_to_w(prepared, state.best_vars["latent"])
  direct = (g.render_from(prepared, w, [], "b8", st.best_acts["b8"]) + 1) / 2
  np.testing.assert_allclose(out["hr"], np.clip(direct, 0, 1), atol=1e-6)
  np.testing.assert_allclose(out["total"], state.best_total, rtol=1e-5)
  values = program.start_values_of(problem, state)
  assert set(values) == {"latent", "ilo.b8"}


def test_without_ilo_the_search_is_unchanged():
  g, params = tiny_dcgan()
  config = SearchConfig(steps=5, loss_str="100*L2")
  ref = jnp.asarray(np.random.RandomState(0).rand(2, 3, 16, 16).astype(np.float32))
  runs = []
  for cfg in (config, dataclasses.replace(config, ilo_steps=7, ilo_radius=0.3)):  # ilo off
    problem = program.Problem(g, cfg, 4, chunk_size=5)
    state = program.init_state(problem, jnp.zeros((2,), jnp.int32), jnp.arange(2, dtype=jnp.int32))
    runs.append(program.run_chunk(problem, params, state, ref))
  assert runs[0][0].ilo is None and runs[1][0].ilo is None
  for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dcgan", "stylegan_32", "stylegan2_skip", "stylegan3_t"])
def test_between_two_cuts_every_family(name):
  split = split_cases()
  g, params = split.CASES[name]()
  prepared = g.prepare(params)
  ws, noise = split._inputs(g)
  a, b = g.ilo_layers[0], g.ilo_layers[1]
  direct = g.render_until(prepared, ws, noise, b)
  between = g.render_from(prepared, ws, noise, a, g.render_until(prepared, ws, noise, a), until=b)
  for x, y in zip(jax.tree.leaves(direct), jax.tree.leaves(between)):
    np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_a_stylegan_searches_its_default_layers_through_the_loop():
  from support import scale_worker
  from pulse_jax.runtime import loop
  g, params, ref, config = scale_worker.tiny_problem(1, 3, 0)
  config = dataclasses.replace(config, ilo=True, ilo_steps=2)
  r = loop.search_images(g, params, ref, config=config, restarts=2, chunk_size=3, keep=1)
  assert r.ilo_layers == g.ilo_default_layers and r.ilo_kept_layer == g.ilo_default_layers[-1]
  assert np.all(np.isfinite(r.l2)) and r.steps_run[0] == 3 + 2 * len(g.ilo_default_layers)
  for layer, moved in r.ilo_moved.items():
    assert np.all(moved <= config.ilo_radius * (1 + 1e-4)), (layer, moved)
  key = f"ilo.{r.ilo_kept_layer}"
  assert r.start_values[key].shape[:2] == (1, 1)
