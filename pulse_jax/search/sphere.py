"""Projection of every row back onto the sphere of its initial radius, as an optax transform.

The reference's SphericalOptimizer stores, at construction, the radius of every row of every
variable (rows = the first two dims; the norm runs over all remaining dims and is
``sqrt(sum(x**2) + 1e-9)``), and after each optimiser step rescales each row back to that
radius. Chained last (``optax.chain(opt, project_to_initial_sphere())``), this transform
returns the update ``u`` such that ``params + u`` is that rescaled point.

Every leaf must have ndim >= 2: a latent ``[B, 18, 512]`` is 18 spheres of dim 512 per image,
a noise map ``[B, 1, r, r]`` one sphere of dim r*r per image. A leaf ``[B, N]`` (ndim 2) makes
every single element its own "sphere", which cannot move: shape a plain vector as ``[B, 1, N]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

NORM_EPS = 1e-9


class SphereState(NamedTuple):
  """``radii``: a pytree like params, each leaf ``[d0, d1, 1, ..., 1]`` (the row radii)."""

  radii: optax.Params


def row_norm(x: jax.Array) -> jax.Array:
  """``sqrt(sum over dims >= 2 of x**2 + 1e-9)``, kept as ``[d0, d1, 1, ..., 1]``."""
  if x.ndim < 2:
    raise ValueError(f"sphere projection needs leaves with ndim >= 2, got shape {x.shape}")
  axes = tuple(range(2, x.ndim))
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=True) + NORM_EPS)


def project_to_initial_sphere() -> optax.GradientTransformation:
  """Optax transform (chain it last) keeping each row of ``params + update`` on its initial sphere.

  ``init(params)`` stores the radii; ``update(updates, state, params)`` requires ``params``.
  """

  def init_fn(params: optax.Params) -> SphereState:
    return SphereState(radii=jax.tree.map(row_norm, params))

  def update_fn(updates, state: SphereState, params=None):
    if params is None:
      raise ValueError("project_to_initial_sphere needs params: call update(updates, state, params)")

    def project(u, p, r):
      moved = p + u
      return (moved / row_norm(moved) * r - p).astype(p.dtype)

    return jax.tree.map(project, updates, params, state.radii), state

  return optax.GradientTransformation(init_fn, update_fn)
