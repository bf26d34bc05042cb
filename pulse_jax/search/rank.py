"""Which iterate of a restart is kept, and how the restarts of an image are ranked: the rule, once.

The compiled search (`program.chunk_steps`), the host loop's progress (`runtime.loop`) and the
final best-of-R all call these functions. Each works on numpy arrays (host) and on jax arrays
(inside a compiled program) alike: the same comparisons, so the same answers.

Kept iterate (per restart): an iterate within eps (unclamped L2 <= eps) beats any that is not;
within the same class the lower total loss wins; a tie keeps the earlier iterate. A non-finite
total or L2 never wins (NaN compares false), so a diverging restart keeps its last finite
iterate, or none (total inf, best_step 0).

Ranking (the restarts of one image): within eps first, then the lowest total, then the lowest
L2 (within eps the clamped L2 term ties, so the total alone would not order by fit), then the
lowest restart index; non-finite totals and L2s count as +inf (last).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _xp(*arrays):
  """jax.numpy where any argument is a jax array (or tracer), else numpy."""
  return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def within_eps(l2, eps: float):
  """[...] bool: unclamped L2 <= eps (NaN: False)."""
  return l2 <= eps


def replaces(total, l2, kept_total, kept_l2, eps: float):
  """[N] bool: whether this step's iterate (total, l2: [N]) replaces the restart's kept one
  (kept_total, kept_l2: [N]; +inf before the first step). Float arrays of any dtype."""
  xp = _xp(total, l2, kept_total, kept_l2)
  within, kept_within = within_eps(l2, eps), within_eps(kept_l2, eps)
  finite = xp.isfinite(total) & xp.isfinite(l2)
  return finite & ((within & ~kept_within) | ((within == kept_within) & (total < kept_total)))


def ranking(total, l2, eps: float):
  """[B, R] restart indices per image, best first (the rule above).

  total, l2: [B, R] float, the kept iterate's total loss and unclamped L2; numpy in, numpy out
  (int64), jax in, jax out (int32).
  """
  xp = _xp(total, l2)
  t = xp.where(xp.isfinite(total), total, xp.inf)
  d = xp.where(xp.isfinite(l2), l2, xp.inf)
  return xp.lexsort((d, t, ~within_eps(l2, eps)), axis=-1)


def best_restart(total, l2, eps: float):
  """[B] index of each image's best restart (`ranking(...)[:, 0]`). total, l2: [B, R]."""
  return ranking(total, l2, eps)[:, 0]


class KeptFollower:
  """Follows, on the host, each restart's kept total and L2 from the per-step losses a chunk
  returns (the same rule as the compiled search), so progress needs no read of device state.

  n: restarts; chunks: host traces {'TOTAL', 'L2_raw': [steps, n], ...} already run (resume).
  """

  def __init__(self, n: int, eps: float, chunks: list[dict] = ()):
    self.eps = eps
    self.total = np.full(n, np.inf)   # [n] float64 until the first step
    self.l2 = np.full(n, np.inf)
    self.chunks: list[dict] = []
    for c in chunks:
      self.add(c)

  def add(self, chunk: dict) -> None:
    """chunk: {'TOTAL': [steps, n], 'L2_raw': [steps, n], ...} host arrays, in step order."""
    self.chunks.append(chunk)
    for total, l2 in zip(chunk.get("TOTAL", ()), chunk.get("L2_raw", ())):
      better = replaces(total, l2, self.total, self.l2, self.eps)
      self.total = np.where(better, total, self.total)
      self.l2 = np.where(better, l2, self.l2)
