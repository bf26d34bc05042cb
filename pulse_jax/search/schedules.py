"""PULSE's learning-rate multipliers as jnp functions of the step.

Step ``t`` counts from 0 (the first optimiser step uses ``mult(0)``, as torch's LambdaLR does).
With ``T = steps``:

- ``fixed``: 1
- ``linear1cycle``: ``(9 * (1 - |t / T - 1/2| * 2) + 1) / 10`` (0.1 -> 1 at T/2 -> 0.1)
- ``linear1cycledrop``: the same cycle over ``0.9 T`` while ``t < 0.9 T``, then
  ``1/10 + (t - 0.9 T) / (0.1 T) * (1/1000 - 1/10)`` (0.1 -> 0.001 at T).

The branch test ``t < 0.9 T`` is decided in Python float64 (as in the reference) and turned
into an integer threshold, so float32 cannot flip it.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")

Multiplier = Callable[[jax.Array], jax.Array]


def _cycle(t: jax.Array, period: float) -> jax.Array:
  return (9.0 * (1.0 - jnp.abs(t / period - 0.5) * 2.0) + 1.0) / 10.0


def lr_multiplier(name: str, steps: int) -> Multiplier:
  """Return ``mult(step)``, elementwise over an int or float step array (any shape).

  The result has jax's default float dtype: float32 (float64 under ``jax_enable_x64``).

  ``name`` in :data:`SCHEDULES`; ``steps`` (T) a positive int. Jit-able; raises ValueError
  on an unknown name or a bad ``steps``.
  """
  if name not in SCHEDULES:
    raise ValueError(f"unknown lr schedule {name!r}; valid schedules: {', '.join(SCHEDULES)}")
  if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
    raise ValueError(f"steps must be a positive integer, got {steps!r}")
  total = float(steps)

  if name == "fixed":
    return lambda step: jnp.ones(jnp.shape(step), float)

  if name == "linear1cycle":
    return lambda step: _cycle(jnp.asarray(step).astype(float), total)

  warm = 0.9 * total  # float64, as the reference computes it
  drop_from = math.ceil(warm)  # integer t: t < warm  <=>  t < ceil(warm)

  def linear1cycledrop(step: jax.Array) -> jax.Array:
    step = jnp.asarray(step)
    t = step.astype(float)
    in_cycle = step < (drop_from if jnp.issubdtype(step.dtype, jnp.integer) else warm)
    tail = 0.1 + (t - warm) / (0.1 * total) * (1.0 / 1000.0 - 1.0 / 10.0)
    return jnp.where(in_cycle, _cycle(t, warm), tail)

  return linear1cycledrop
