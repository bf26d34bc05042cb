"""Schedules, the sphere projection, and the optimisers against float64 numpy versions of torch's rules.

The numpy references below are written from torch's documented algorithms (SGD with momentum and
dampening 0, Adam, Adamax) plus LambdaLR (step t uses lr * mult(t), t = 0 first) and the
reference's SphericalOptimizer (rescale each row to its initial radius after every step).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pulse_jax.search.optimizers import OPTIMIZERS, make_optimizer
from pulse_jax.search.schedules import SCHEDULES, lr_multiplier
from pulse_jax.search.sphere import project_to_initial_sphere, row_norm

STEP_COUNTS = (1, 7, 30, 100, 1000)


def _mult64(name, t, steps):
  if name == "fixed":
    return 1.0
  if name == "linear1cycle":
    return (9 * (1 - abs(t / steps - 1 / 2) * 2) + 1) / 10
  if t < 0.9 * steps:
    return (9 * (1 - abs(t / (0.9 * steps) - 1 / 2) * 2) + 1) / 10
  return 1 / 10 + (t - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("steps", STEP_COUNTS)
def test_schedule_matches_float64_formula(name, steps):
  t = np.arange(steps + 1)
  want = np.array([_mult64(name, int(i), steps) for i in t])
  got = jax.jit(lr_multiplier(name, steps))(jnp.asarray(t))
  assert got.dtype == jnp.float32 and got.shape == t.shape
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(float(lr_multiplier(name, steps)(3)), _mult64(name, 3, steps), rtol=1e-6)


def test_schedule_rejects_bad_arguments():
  with pytest.raises(ValueError, match="fixed, linear1cycle, linear1cycledrop"):
    lr_multiplier("cosine", 10)
  for bad in (0, -1, 2.5):
    with pytest.raises(ValueError, match="steps"):
      lr_multiplier("fixed", bad)


def test_sphere_projection_keeps_initial_row_radii():
  rng = np.random.default_rng(0)
  params = {"latent": jnp.asarray(rng.normal(size=(2, 3, 16)), jnp.float32),
            "noise": jnp.asarray(rng.normal(size=(2, 1, 4, 4)), jnp.float32)}
  tx = project_to_initial_sphere()
  state = tx.init(params)
  radii = jax.tree.map(lambda x: np.sqrt((np.asarray(x, np.float64) ** 2).sum(axis=tuple(range(2, x.ndim)), keepdims=True) + 1e-9), params)
  for leaf, r in zip(jax.tree.leaves(state.radii), jax.tree.leaves(radii)):
    np.testing.assert_allclose(np.asarray(leaf), r, rtol=1e-6)
  step = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), params)
  updates, new_state = jax.jit(tx.update)(step, state, params)
  moved = optax.apply_updates(params, updates)
  for leaf, r in zip(jax.tree.leaves(moved), jax.tree.leaves(radii)):
    np.testing.assert_allclose(np.asarray(row_norm(leaf)), r, rtol=1e-6)
  direction = jax.tree.map(lambda p, u: (p + u) / row_norm(p + u), params, step)
  for a, b in zip(jax.tree.leaves(moved), jax.tree.leaves(direction)):
    np.testing.assert_allclose(np.asarray(a / row_norm(a)), np.asarray(b), atol=1e-6)
  with pytest.raises(ValueError, match="params"):
    tx.update(step, new_state)
  with pytest.raises(ValueError, match="ndim >= 2"):
    tx.init({"v": jnp.ones(3)})


def test_make_optimizer_rejects_bad_arguments():
  with pytest.raises(ValueError, match="sgd, adam, sgdm, adamax"):
    make_optimizer("rmsprop", 0.1, "fixed", 10)
  with pytest.raises(ValueError, match="fixed, linear1cycle, linear1cycledrop"):
    make_optimizer("adam", 0.1, "step", 10)
  for lr in (0.0, -0.1, float("nan"), float("inf"), "fast"):
    with pytest.raises(ValueError, match="learning_rate"):
      make_optimizer("adam", lr, "fixed", 10)


def _torch_like(opt, lr, schedule, steps, params, curv, target):
  """float64 numpy: torch optimiser + LambdaLR + SphericalOptimizer on 0.5*sum(c*(p-t)**2)."""
  norm = lambda x: np.sqrt((x**2).sum(axis=tuple(range(2, x.ndim)), keepdims=True) + 1e-9)
  params = {k: v.astype(np.float64) for k, v in params.items()}
  radii = {k: norm(v) for k, v in params.items()}
  state = {k: {"m": np.zeros_like(v), "v": np.zeros_like(v), "buf": None} for k, v in params.items()}
  trajectory = []
  for t in range(steps):
    lr_t = lr * _mult64(schedule, t, steps)
    s = t + 1
    for k, p in params.items():
      g, st = curv[k] * (p - target[k]), state[k]
      if opt == "sgd":
        p = p - lr_t * g
      elif opt == "sgdm":
        st["buf"] = g.copy() if st["buf"] is None else 0.9 * st["buf"] + g
        p = p - lr_t * st["buf"]
      elif opt == "adam":
        st["m"] = 0.9 * st["m"] + 0.1 * g
        st["v"] = 0.999 * st["v"] + 0.001 * g * g
        denom = np.sqrt(st["v"]) / math.sqrt(1 - 0.999**s) + 1e-8
        p = p - lr_t / (1 - 0.9**s) * st["m"] / denom
      else:  # adamax
        st["m"] = 0.9 * st["m"] + 0.1 * g
        st["v"] = np.maximum(0.999 * st["v"], np.abs(g) + 1e-8)
        p = p - lr_t / (1 - 0.9**s) * st["m"] / st["v"]
      params[k] = p / norm(p) * radii[k]
    trajectory.append({k: v.copy() for k, v in params.items()})
  return {k: np.stack([step[k] for step in trajectory]) for k in params}


def _problem(opt):
  rng = np.random.default_rng(OPTIMIZERS.index(opt))
  shapes = {"latent": (2, 3, 16), "noise": (2, 1, 4, 4)}
  params = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
  curv = {k: rng.uniform(0.5, 2.0, size=s) for k, s in shapes.items()}
  target = {k: rng.normal(size=s) for k, s in shapes.items()}
  return params, curv, target


def _run_jax(opt, lr, schedule, steps, params, curv, target, dtype):
  """The pulse_jax optimiser for ``steps`` steps (lax.scan); returns the [steps, ...] trajectory."""
  tx = make_optimizer(opt, lr, schedule, steps)
  curv, target = (jax.tree.map(lambda x: jnp.asarray(x, dtype), t) for t in (curv, target))
  loss = lambda p: sum(0.5 * jnp.sum(curv[k] * (p[k] - target[k]) ** 2) for k in p)

  def step(carry, _):
    p, state = carry
    updates, state = tx.update(jax.grad(loss)(p), state, p)
    p = optax.apply_updates(p, updates)
    return (p, state), p

  p0 = jax.tree.map(lambda x: jnp.asarray(x, dtype), params)
  _, trajectory = jax.jit(lambda p: jax.lax.scan(step, (p, tx.init(p)), length=steps))(p0)
  return jax.tree.map(np.asarray, trajectory)


LRS = {"sgd": 0.1, "sgdm": 0.02, "adam": 0.05, "adamax": 0.05}


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_optimizer_matches_torch_rules_float64(opt, schedule):
  """Same algorithm: under jax_enable_x64 the trajectories agree to float64 rounding (~5e-15)."""
  steps, lr = 50, LRS[opt]
  params, curv, target = _problem(opt)
  want = _torch_like(opt, lr, schedule, steps, params, curv, target)
  with jax.enable_x64(True):
    got = _run_jax(opt, lr, schedule, steps, params, curv, target, jnp.float64)
  for k in params:
    assert got[k].dtype == np.float64
    np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-12, err_msg=f"{opt}/{schedule}/{k}")
  assert float(np.abs(got["latent"][-1] - params["latent"]).max()) > 0.05  # it moved


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_optimizer_matches_torch_rules_float32(opt, schedule="linear1cycledrop"):
  """As used (float32): params are O(1), rows of norm ~2-4; float32 rounding over 50 steps
  stays below 5e-5 absolute (Adam near a stationary point divides rounding noise by sqrt(v),
  so the drift there is ~1e-5; elsewhere it is ~1e-6)."""
  steps, lr = 50, LRS[opt]
  params, curv, target = _problem(opt)
  want = _torch_like(opt, lr, schedule, steps, params, curv, target)
  got = _run_jax(opt, lr, schedule, steps, params, curv, target, jnp.float32)
  for k in params:
    assert got[k].dtype == np.float32
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=5e-5, err_msg=f"{opt}/{schedule}/{k}")
