"""PULSE's loss terms (L2, L1, GEOCROSS), per image, the table of terms and the loss-string parser.

`LOSS_TERMS` is the one table of terms: name -> `LossTerm` (its function of the search's
`LossInputs`, and the generators it applies to). The parser, `total_loss`, the --loss_str help
(`loss_str_help`) and the job's dropping of terms that do not apply to a generator
(`pulse_jax.job.model.loss_for_generator`) all read it. Adding a term: its function here and
one `LossTerm` entry in `LOSS_TERMS` (an upper-case name).

Unlike the reference, which sums every term over the batch, each function here returns one
value per image (the leading dims are kept), so that restarts and images can be judged on their
own; ``sum`` over the leading dims gives back the reference's numbers.

Shapes: ``lr_gen, ref: [..., C, h, w]`` float32 (the down-sampled generated image and the
target, both in [0, 1]); ``w: [..., L, 512]`` float32 (the W+ latents after the LeakyReLU
mapping, not the search variable x); ``mask: [..., 1 or C, h, w]`` float32 weights or None.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

_GEOCROSS_DIM = 512.0  # the reference's constant factor (the W dimension of StyleGAN)
_NORM_EPS = 1e-9

LossTerms = tuple[tuple[float, str], ...]


def parse_loss_str(loss_str: str) -> LossTerms:
  """Parse ``"100*L2+0.05*GEOCROSS"`` into ``((100.0, "L2"), (0.05, "GEOCROSS"))``.

  Terms are ``weight*NAME`` joined by ``+``; whitespace is ignored and names are
  case-insensitive. Raises ValueError on an empty string, an unknown name, a missing or
  unparsable weight, a negative or non-finite weight, or a repeated term.
  """
  valid = ", ".join(LOSS_TERMS)
  hint = f"expected terms 'weight*NAME' joined by '+', NAME one of {valid} (e.g. '100*L2+0.05*GEOCROSS')"
  if not isinstance(loss_str, str) or not "".join(loss_str.split()):
    raise ValueError(f"empty loss string {loss_str!r}; {hint}")
  terms, seen = [], set()
  for raw in "".join(loss_str.split()).split("+"):
    parts = raw.split("*")
    if len(parts) != 2 or not parts[0] or not parts[1]:
      raise ValueError(f"bad loss term {raw!r} in {loss_str!r}; {hint}")
    weight_str, name = parts[0], parts[1].upper()
    if name not in LOSS_TERMS:
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


class LossInputs(NamedTuple):
  """What a term is computed from (shapes: see the module docstring): ``w`` the W+ latents
  ``[..., L, 512]``, ``lr_gen`` and ``ref`` ``[..., C, h, w]``, ``eps`` the clamp, ``mask``
  ``[..., 1 or C, h, w]`` or None."""
  w: jax.Array
  lr_gen: jax.Array
  ref: jax.Array
  eps: float
  mask: jax.Array | None


class LossTerm(NamedTuple):
  """One loss term: ``compute(LossInputs) -> [...]`` float32, one value per image, unweighted.

  applies: generator -> bool, whether the term means something for it (None: every generator);
  a loss string's terms that do not apply are dropped for it, with a note. The texts say why,
  for such a term (each completes a sentence, see `pulse_jax.job.model.loss_for_generator`):
  dropped_help: appended to the --loss_str help ('GEOCROSS is dropped for generators without W+
  latents, e.g. the DCGAN'); lacks: what such a generator lacks ('no W+ latents'); note_why: the
  reason in the note printed when the term is dropped.
  """
  compute: Callable[[LossInputs], jax.Array]
  applies: Callable[[Any], bool] | None = None
  dropped_help: str = ""
  lacks: str = ""
  note_why: str = ""

  def applies_to(self, generator) -> bool:
    return self.applies is None or bool(self.applies(generator))


# The table of loss terms: name (upper case) -> term, in the order of the --loss_str help.
LOSS_TERMS: dict[str, LossTerm] = {
    "L2": LossTerm(lambda t: l2(t.lr_gen, t.ref, t.eps, t.mask)),
    "L1": LossTerm(lambda t: l1(t.lr_gen, t.ref, t.eps, t.mask)),
    "GEOCROSS": LossTerm(
        lambda t: geocross(t.w),
        applies=lambda g: g.has_wplus,
        dropped_help="GEOCROSS is dropped for generators without W+ latents, e.g. the DCGAN",
        lacks="no W+ latents",
        note_why="one latent vector, no W+; the reference computes 0 for it when tiled"),
}


def loss_str_help() -> str:
  """The --loss_str help: the format and the names of `LOSS_TERMS`, and which terms are
  dropped for which generators."""
  dropped = "; ".join(t.dropped_help for t in LOSS_TERMS.values() if t.dropped_help)
  return (f"Loss: 'weight*NAME' terms joined by '+', NAME in {', '.join(LOSS_TERMS)}"
          + (f" ({dropped})." if dropped else "."))


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
  ``terms`` is the output of :func:`parse_loss_str` (a loss string is parsed for you); each
  term is computed by its `LOSS_TERMS` entry.
  """
  if isinstance(terms, str):
    terms = parse_loss_str(terms)
  if not terms or any(name not in LOSS_TERMS for _, name in terms):
    raise ValueError(f"terms must be a non-empty tuple of (weight, name), name in "
                     f"{tuple(LOSS_TERMS)}")
  inputs = LossInputs(w, lr_gen, ref, eps, mask)
  values = {name: LOSS_TERMS[name].compute(inputs) for _, name in terms}
  total = sum(weight * values[name] for weight, name in terms)
  return total, values
