"""Intermediate-layer optimisation (ILO, Daras et al., ICML 2021): the parts of the search past
the generator's range.

After the latent search (`config.steps` steps), the search visits the cut points
`layers = (l_1, .., l_K)` of the synthesis network in turn, `config.ilo_steps` steps each. On
entering l_k, the kept iterate is re-expressed at l_k: its activation there, `a_k`, computed
from the kept latent (k = 1) or from the kept activation at l_(k-1) (k > 1), becomes both the
variable and the centre c_k of an l1 ball of radius `config.ilo_radius * ||c_k||_1` (per
restart). Adam (constant `config.ilo_learning_rate`) moves a_k; after each update a_k is
projected back onto the ball (`project_l1_ball`, exact). The image is the rest of the network
from a_k (`Generator.render_from`) with the kept latent and noise maps, which no longer move.
Re-expressing renders the same image (cutting and resuming is exact), so the kept iterate
carries over: it is kept by the same rule as in the latent search (`rank.replaces`).

Nothing here runs a generator: `search.program` composes these pieces into its step.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pulse_jax.search.config import SearchConfig, ilo_layer_names


class IloState(NamedTuple):
  """The ILO part of the search's carry; every dict is keyed by cut point, every leaf [N, ...]
  (an activation as `Generator.render_until` returns it; a pytree for StyleGAN2: x and img).

  acts: the current activation of each layer (zeros before the layer is entered)
  centres: the activation each layer was entered with (the ball's centre)
  opt_state: Adam's state per layer (fresh until the layer is entered)
  best_acts: the kept iterate's activation per layer
  """
  acts: dict
  centres: dict
  opt_state: dict
  best_acts: dict


def layers(config: SearchConfig, generator) -> tuple[str, ...]:
  """The cut points an ILO search visits, in order: () without config.ilo; config.ilo_layers
  or the generator's defaults. ValueError naming the generator's cut points for an unknown
  or out-of-order name."""
  if not config.ilo:
    return ()
  names = ilo_layer_names(config.ilo_layers) or tuple(generator.ilo_default_layers)
  cuts = tuple(generator.ilo_layers)
  unknown = [n for n in names if n not in cuts]
  if unknown:
    raise ValueError(f"ilo_layers {', '.join(map(repr, unknown))}: not a cut point of this "
                     f"{generator.kind} generator; its cut points are {', '.join(cuts)}.")
  order = [cuts.index(n) for n in names]
  if order != sorted(set(order)):
    raise ValueError(f"ilo_layers must be distinct cut points in network order "
                     f"({', '.join(cuts)}), got {','.join(names)}.")
  return names


def phase_starts(config: SearchConfig, num_layers: int) -> tuple[int, ...]:
  """The step at which each ILO layer is entered: (steps, steps + ilo_steps, ..)."""
  return tuple(config.steps + k * config.ilo_steps for k in range(num_layers))


def total_steps(config: SearchConfig, num_layers: int) -> int:
  """Steps of the whole search: config.steps, plus config.ilo_steps per ILO layer (without
  layers, config.steps alone)."""
  return config.steps + num_layers * config.ilo_steps if num_layers else config.steps


def phase_at(starts: tuple[int, ...], step: jax.Array) -> jax.Array:
  """[] int32: the phase a step (0-based) runs in: 0 the latent search, k the k-th layer."""
  if not starts:
    return jnp.zeros((), jnp.int32)
  return jnp.sum(step >= jnp.asarray(starts, jnp.int32), dtype=jnp.int32)


def kept_phase(starts: tuple[int, ...], steps_done: jax.Array) -> jax.Array:
  """[] int32: the phase of the kept iterate once `steps_done` steps have run (layers entered)."""
  if not starts:
    return jnp.zeros((), jnp.int32)
  return jnp.sum(steps_done > jnp.asarray(starts, jnp.int32), dtype=jnp.int32)


def optimizer(config: SearchConfig) -> optax.GradientTransformation:
  """Adam (torch's betas and eps, as the latent search) at config.ilo_learning_rate."""
  return optax.adam(config.ilo_learning_rate, b1=0.9, b2=0.999, eps=1e-8)


def init_state(config: SearchConfig, activation_shapes: dict) -> IloState:
  """Zeros for every layer; activation_shapes: {layer: tree of jax.ShapeDtypeStruct [N, ...]}."""
  zeros = {k: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), v)
           for k, v in activation_shapes.items()}
  opt = optimizer(config)
  return IloState(acts=zeros, centres=zeros, opt_state={k: opt.init(v) for k, v in zeros.items()},
                  best_acts=zeros)


def _rows(tree) -> tuple[jax.Array, Any]:
  """A tree of [N, ...] leaves as one [N, d] float32 matrix, and the function back."""
  leaves, treedef = jax.tree.flatten(tree)
  n = leaves[0].shape[0]
  flat = jnp.concatenate([x.reshape(n, -1).astype(jnp.float32) for x in leaves], axis=1)
  sizes = [x[0].size for x in leaves]

  def back(m):
    out, at = [], 0
    for x, size in zip(leaves, sizes):
      out.append(m[:, at:at + size].reshape(x.shape).astype(x.dtype))
      at += size
    return jax.tree.unflatten(treedef, out)
  return flat, back


def project_l1_ball(v: jax.Array, radius: jax.Array) -> jax.Array:
  """The Euclidean projection of each row of v [N, d] onto {x: ||x||_1 <= radius} (radius [N]
  >= 0), exact (Duchi et al. 2008, sort-based): rows inside the ball are returned as they are;
  the others are soft-thresholded, sign(v) max(|v| - theta, 0), with the theta >= 0 that puts
  them on the sphere."""
  a = jnp.abs(v)
  u = -jnp.sort(-a, axis=1)                                    # |v| descending
  css = jnp.cumsum(u, axis=1)
  j = jnp.arange(1, v.shape[1] + 1, dtype=v.dtype)
  r = radius[:, None].astype(v.dtype)
  positive = u - (css - r) / j > 0                             # a prefix of True
  rho = jnp.maximum(jnp.sum(positive, axis=1), 1)              # [N] >= 1
  theta = (jnp.take_along_axis(css, rho[:, None] - 1, axis=1) - r) / rho[:, None].astype(v.dtype)
  projected = jnp.sign(v) * jnp.maximum(a - jnp.maximum(theta, 0.0), 0.0)
  inside = jnp.sum(a, axis=1, keepdims=True) <= r
  return jnp.where(inside, v, projected)


def radius(config: SearchConfig, centre) -> jax.Array:
  """[N]: the l1 radius of each row's ball, config.ilo_radius x ||centre||_1."""
  flat, _ = _rows(centre)
  return config.ilo_radius * jnp.sum(jnp.abs(flat), axis=1)


def project(config: SearchConfig, act, centre):
  """`act` (a tree of [N, ...]) moved onto the l1 ball around `centre`."""
  a, back = _rows(act)
  c, _ = _rows(centre)
  return back(c + project_l1_ball(a - c, radius(config, centre)))


def moved(act, centre) -> jax.Array:
  """[N] float32: ||act - centre||_1 / ||centre||_1, how far an activation left the range
  (the point it was entered with; at most config.ilo_radius)."""
  a, _ = _rows(act)
  c, _ = _rows(centre)
  return jnp.sum(jnp.abs(a - c), axis=1) / jnp.maximum(jnp.sum(jnp.abs(c), axis=1), 1e-30)
