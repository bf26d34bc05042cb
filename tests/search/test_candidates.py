"""The kept candidates of an image (greedy farthest point among the within-eps restarts), their
diversity figure, and the spread map (search/candidates.py)."""
from __future__ import annotations

import numpy as np
from pulse_jax.search import candidates, program


def _features(points):
  return np.asarray(points, np.float64)


def test_diverse_selection_is_best_first_then_farthest_point():
  # restarts 0..4 in a 1-D feature space; all within eps; ranking 2, 0, 1, 3, 4
  f = _features([[0.0], [0.1], [0.05], [1.0], [0.55]])
  within = np.ones(5, bool)
  sel, filled = candidates.diverse_selection(f, np.array([2, 0, 1, 3, 4]), within, 3)
  # best (2, at 0.05); farthest from it: 3 (1.0); then the farthest from {0.05, 1.0}: 4 (0.55)
  assert list(sel) == [2, 3, 4] and filled == 0
  # plain L2 order keeps near-copies: 2, 0, 1 are all within 0.1 of each other
  sel_l2, _ = candidates.l2_selection(np.array([2, 0, 1, 3, 4]), within, 3)
  assert list(sel_l2) == [2, 0, 1]
  assert (candidates.mean_pairwise_distance(f[sel])
          > 5 * candidates.mean_pairwise_distance(f[sel_l2]))


def test_not_within_eps_restarts_only_fill_up_and_are_counted():
  f = _features([[0.0], [5.0], [0.2], [9.0]])
  within = np.array([True, False, True, False])   # the far ones failed
  sel, filled = candidates.diverse_selection(f, np.array([0, 2, 1, 3]), within, 3)
  assert list(sel) == [0, 2, 1] and filled == 1     # the within-eps ones first, then the best other
  sel, filled = candidates.diverse_selection(f, np.array([0, 2, 1, 3]), within, 2)
  assert list(sel) == [0, 2] and filled == 0
  sel, filled = candidates.diverse_selection(f, np.array([3, 1, 0, 2]), np.zeros(4, bool), 2)
  assert list(sel) == [3, 1] and filled == 2          # none within: the ranking


def test_ties_go_to_the_better_ranked():
  f = _features([[0.0], [1.0], [-1.0]])
  sel, _ = candidates.diverse_selection(f, np.array([0, 2, 1]), np.ones(3, bool), 2)
  assert list(sel) == [0, 2]   # 1 and 2 are equally far from 0: 2 is ranked before 1


def test_distances_are_rms_pixel_differences():
  a = np.zeros((1, 3, 8, 8))
  b = np.full((1, 3, 8, 8), 0.5)
  f = candidates.image_features(np.concatenate([a, b]))
  assert f.shape == (2, 3 * 8 * 8)
  np.testing.assert_allclose(candidates.distances(f), [[0, 0.5], [0.5, 0]], atol=1e-12)
  assert np.isnan(candidates.mean_pairwise_distance(f[:1]))


def test_image_features_pool_large_images():
  hr = np.random.default_rng(0).random((2, 3, 256, 256))
  f = candidates.image_features(hr)
  assert f.shape == (2, 3 * 64 * 64)
  np.testing.assert_allclose(f[0, 0], hr[0, 0, :4, :4].mean())


def test_spread_map_is_the_per_pixel_std_over_restarts():
  rng = np.random.default_rng(1)
  hr = rng.random((5, 3, 6, 6))
  m = candidates.spread_map(hr)
  np.testing.assert_allclose(m, hr.std(axis=0).mean(axis=0), rtol=1e-5, atol=1e-7)
  acc = candidates.SpreadAccumulator()  # in pieces: the same map
  acc.add(hr[:2])
  acc.add(hr[2:2])
  acc.add(hr[2:])
  np.testing.assert_allclose(acc.map(), m, rtol=1e-5, atol=1e-7)
  assert acc.count == 5
  # identical images: no spread; where only some pixels differ, only those are bright
  same = np.repeat(hr[:1], 3, axis=0)
  assert np.all(candidates.spread_map(same) < 1e-6)
  same[1, :, 2, 3] = 1 - same[0, :, 2, 3]
  m = candidates.spread_map(same)
  assert m[2, 3] > 0 and np.count_nonzero(m > 1e-6) == 1


def test_no_map_from_fewer_than_two():
  assert candidates.spread_map(np.zeros((1, 3, 4, 4))) is None
  assert candidates.SpreadAccumulator().map() is None


def test_within_per_row_counts_an_images_restarts_only():
  """The anytime search's count (search/program.py): per row, its image's restarts within eps;
  padding rows (more restarts of the last image) follow the last image and are never counted."""
  import types
  import jax.numpy as jnp
  layout = types.SimpleNamespace(images=2, restarts=3)
  within = jnp.array([1, 0, 1, 1, 1, 1, 1, 1], bool)     # rows 6, 7: padding (within, ignored)
  np.testing.assert_array_equal(program.within_per_row(layout, within), [2, 2, 2, 3, 3, 3, 3, 3])
  one_image = types.SimpleNamespace(images=0, restarts=0)
  np.testing.assert_array_equal(program.within_per_row(one_image, within[:3]), [2, 2, 2])


def test_ends_after_decides_once_per_image_exact_to_the_step():
  import types
  import jax.numpy as jnp
  from pulse_jax.search.config import SearchConfig
  config = SearchConfig(steps=100, eps=0.1, stop_within=2, stop_extra_steps=5)
  problem = types.SimpleNamespace(images=2, restarts=2, config=config, total_steps=config.steps)
  state = types.SimpleNamespace(step=jnp.int32(40), ends_at=jnp.full(4, 100, jnp.int32))
  # image 0: both restarts within eps after step 41 -> ends after step 41 + 5; image 1: one
  ends = program.ends_after(problem, state, jnp.array([0.05, 0.1, 0.05, 0.2]))
  np.testing.assert_array_equal(ends, [46, 46, 100, 100])
  # decided once: a later step does not move it; never past the last step
  later = types.SimpleNamespace(step=jnp.int32(97), ends_at=ends)
  np.testing.assert_array_equal(
      program.ends_after(problem, later, jnp.array([0.05, 0.1, 0.05, 0.05])), [46, 46, 100, 100])
