"""PULSE's loss terms (L2, L1, GEOCROSS), per image, and its loss-string parser.

Unlike the reference, which sums every term over the batch, each function here returns one
value per image (the leading dims are kept), so that restarts and images can be judged on their
own; ``sum`` over the leading dims gives back the reference's numbers.

Shapes: ``lr_gen, ref: [..., C, h, w]`` float32 (the down-sampled generated image and the
target, both in [0, 1]); ``w: [..., L, 512]`` float32 (the W+ latents after the LeakyReLU
mapping, not the search variable x); ``mask: [..., 1 or C, h, w]`` float32 weights or None.
"""

from __future__ import annotations

import math
from typing import Mapping

import jax
import jax.numpy as jnp

LOSS_NAMES = ("L2", "L1", "GEOCROSS")
_GEOCROSS_DIM = 512.0  # the reference's constant factor (the W dimension of StyleGAN)
_NORM_EPS = 1e-9

LossTerms = tuple[tuple[float, str], ...]


def parse_loss_str(loss_str: str) -> LossTerms:
  """Parse ``"100*L2+0.05*GEOCROSS"`` into ``((100.0, "L2"), (0.05, "GEOCROSS"))``.

  Terms are ``weight*NAME`` joined by ``+``; whitespace is ignored and names are
  case-insensitive. Raises ValueError on an empty string, an unknown name, a missing or
  unparsable weight, a negative or non-finite weight, or a repeated term.
  """
  valid = ", ".join(LOSS_NAMES)
  hint = f"expected terms 'weight*NAME' joined by '+', NAME one of {valid} (e.g. '100*L2+0.05*GEOCROSS')"
  if not isinstance(loss_str, str) or not "".join(loss_str.split()):
    raise ValueError(f"empty loss string {loss_str!r}; {hint}")
  terms, seen = [], set()
  for raw in "".join(loss_str.split()).split("+"):
    parts = raw.split("*")
    if len(parts) != 2 or not parts[0] or not parts[1]:
      raise ValueError(f"bad loss term {raw!r} in {loss_str!r}; {hint}")
    weight_str, name = parts[0], parts[1].upper()
    if name not in LOSS_NAMES:
      raise ValueError(f"unknown loss term {parts[1]!r} in {loss_str!r}; valid terms: {valid}")
    try:
      weight = float(weight_str)
    except ValueError:
      raise ValueError(f"bad weight {weight_str!r} for {name} in {loss_str!r}; {hint}") from None
    if not math.isfinite(weight) or weight < 0:
      raise ValueError(f"weight of {name} must be finite and >= 0, got {weight_str!r}")
    if name in seen:
      raise ValueError(f"loss term {name} appears twice in {loss_str!r}")
    seen.add(name)
    terms.append((weight, name))
  return tuple(terms)


def _masked_mean(values: jax.Array, mask: jax.Array | None) -> jax.Array:
  """Mean of ``values: [..., C, h, w]`` over its last 3 dims, weighted by ``mask``."""
  if mask is None:
    return jnp.mean(values, axis=(-3, -2, -1))
  mask = jnp.broadcast_to(jnp.asarray(mask, values.dtype), values.shape)
  total = jnp.sum(values * mask, axis=(-3, -2, -1))
  return total / jnp.maximum(jnp.sum(mask, axis=(-3, -2, -1)), 1e-12)


def l2_raw(lr_gen: jax.Array, ref: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Unclamped mean squared error per image: ``[...]`` float32 (for the eps success test)."""
  return _masked_mean(jnp.square(lr_gen - ref), mask)


def l2(lr_gen: jax.Array, ref: jax.Array, eps: float, mask: jax.Array | None = None) -> jax.Array:
  """Reference L2 per image: ``max(mean((lr_gen - ref)**2), eps)``, shape ``[...]``."""
  return jnp.maximum(l2_raw(lr_gen, ref, mask), eps)


def l1(lr_gen: jax.Array, ref: jax.Array, eps: float, mask: jax.Array | None = None) -> jax.Array:
  """Reference L1 per image: ``10 * max(mean|lr_gen - ref|, eps)``, shape ``[...]``."""
  return 10.0 * jnp.maximum(_masked_mean(jnp.abs(lr_gen - ref), mask), eps)


def _norm(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=-1) + _NORM_EPS)


def geocross(w: jax.Array) -> jax.Array:
  """Mean squared pairwise geodesic angle of the L latents: ``w: [..., L, D] -> [...]``.

  For every (i, j) pair, ``d = 2 * atan2(|w_i - w_j|, |w_i + w_j|)`` (norms with +1e-9
  inside the sqrt); returns ``mean_{i,j}(d**2 * 512) / 8``. Zero when ``L == 1`` (a tiled
  latent). Note: an L = 18 stack of identical rows gives a tiny non-zero value (about
  ``64e-9 / |w|**2``) because of the +1e-9, as in the reference.
  """
  w = jnp.asarray(w)
  if w.shape[-2] == 1:
    return jnp.zeros(w.shape[:-2], w.dtype)
  x, y = w[..., None, :, :], w[..., :, None, :]  # [..., 1, L, D], [..., L, 1, D]
  d = 2.0 * jnp.arctan2(_norm(x - y), _norm(x + y))  # [..., L, L]
  return jnp.mean(jnp.square(d) * _GEOCROSS_DIM, axis=(-2, -1)) / 8.0


def total_loss(
    terms: LossTerms | str,
    w: jax.Array,
    lr_gen: jax.Array,
    ref: jax.Array,
    eps: float,
    mask: jax.Array | None = None,
) -> tuple[jax.Array, Mapping[str, jax.Array]]:
  """Weighted sum of the parsed ``terms`` per image.

  Returns ``(total [...], {name: [...]})`` (float32), each term per image, unweighted.
  ``terms`` is the output of :func:`parse_loss_str` (a loss string is parsed for you).
  """
  if isinstance(terms, str):
    terms = parse_loss_str(terms)
  if not terms or any(name not in LOSS_NAMES for _, name in terms):
    raise ValueError(f"terms must be a non-empty tuple of (weight, name), name in {LOSS_NAMES}")
  fns = {
      "L2": lambda: l2(lr_gen, ref, eps, mask),
      "L1": lambda: l1(lr_gen, ref, eps, mask),
      "GEOCROSS": lambda: geocross(w),
  }
  values = {name: fns[name]() for _, name in terms}
  total = sum(weight * values[name] for weight, name in terms)
  return total, values
