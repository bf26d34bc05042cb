"""Rematerialisation that the compiler cannot undo: recompute in the backward pass, after the
cotangent arrives.

`jax.checkpoint` marks what to recompute but leaves WHEN to XLA's scheduler. XLA:CPU drops
`optimization_barrier`s before it schedules, and then computes every block's recomputation as
soon as its inputs exist (the saved block inputs, there right after the forward pass): all
blocks' activations are alive together, and a 1024 px StyleGAN needs as much memory with
`jax.checkpoint` per block as without it (docs/scaling.md). `recompute_in_backward` makes the
recomputation depend on the incoming cotangent, with an optimization barrier (GPU, TPU) and
with a data dependency no backend removes (each row's inputs plus 0 x one element of that
row's cotangent), so only one block's activations are alive at a time.
"""
from __future__ import annotations

from typing import Callable

import jax
from jax import lax


def depend_on(rows, other):
  """`rows` (array pytree, leading dim N) made to depend on `other` (leading dim N), row by
  row, without changing a value: row n + 0 * (one element of other's row n). XLA then computes
  nothing from `rows` before `other` exists (no backend removes a float x 0)."""
  leaf = jax.tree.leaves(other)[0]
  zero = 0 * lax.stop_gradient(leaf.reshape(leaf.shape[0], -1)[:, 0])  # [N]; NaN: that row's
  return jax.tree.map(
      lambda a: a + zero.astype(a.dtype).reshape((-1,) + (1,) * (a.ndim - 1)), rows)


def recompute_in_backward(fn: Callable) -> Callable:
  """`fn(consts, *rows)` that saves only its inputs for the backward pass.

  consts: an array pytree without a batch dimension (e.g. weights); rows: array pytrees whose
  leaves have leading dimension N, as does every output leaf. The backward pass recomputes
  `fn`'s forward from the saved inputs once the cotangent of its output is known, then
  differentiates it. Same values and gradients as `fn` (its forward runs twice when
  differentiated). Static configuration must be bound into `fn` (`functools.partial`).
  """

  @jax.custom_vjp
  def wrapped(consts, *rows):
    return fn(consts, *rows)

  def forward(consts, *rows):
    return fn(consts, *rows), (consts, rows)

  def backward(saved, cotangent):
    (consts, rows), cotangent = lax.optimization_barrier((saved, cotangent))
    _, pullback = jax.vjp(fn, consts, *depend_on(rows, cotangent))
    return pullback(cotangent)

  wrapped.defvjp(forward, backward)
  return wrapped
