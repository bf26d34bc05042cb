"""The reference's optimisers (torch defaults) with its LR schedule and spherical projection.

``make_optimizer`` returns ``optax.chain(base, project_to_initial_sphere())`` where ``base`` is,
with the learning rate ``lr * mult(t)`` at step t (t = 0 for the first update, like torch's
LambdaLR):

- ``sgd``: ``p -= lr_t * g``
- ``sgdm``: torch SGD, momentum 0.9, dampening 0: ``buf = 0.9 * buf + g`` (``buf = g`` at
  step 1), ``p -= lr_t * buf`` (= ``optax.sgd(momentum=0.9)``)
- ``adam``: torch Adam, betas (0.9, 0.999), eps 1e-8 outside the sqrt (= ``optax.adam``)
- ``adamax``: torch Adamax, betas (0.9, 0.999), eps 1e-8:
  ``u = max(0.999 * u, |g| + eps)``, ``p -= lr_t / (1 - 0.9**t) * m / u`` — eps is inside the
  max and only the first moment is bias-corrected, which is exactly ``optax.adamax``.

Apply with ``optax.apply_updates`` (or ``params + updates``); ``update`` needs ``params``.
"""

from __future__ import annotations

import math

import optax

from pulse_jax.search.schedules import lr_multiplier
from pulse_jax.search.sphere import project_to_initial_sphere

OPTIMIZERS = ("sgd", "adam", "sgdm", "adamax")

_BETAS = (0.9, 0.999)
_EPS = 1e-8
_MOMENTUM = 0.9


def learning_rate_fn(learning_rate: float, lr_schedule: str, steps: int):
  """``count -> learning_rate * mult(count)`` (default float dtype), count = 0 at the first update."""
  mult = lr_multiplier(lr_schedule, steps)
  return lambda count: learning_rate * mult(count)


def make_optimizer(
    opt_name: str, learning_rate: float, lr_schedule: str, steps: int
) -> optax.GradientTransformation:
  """The reference's spherical optimiser as one optax transform (see the module docstring).

  Raises ValueError on an unknown ``opt_name`` / ``lr_schedule``, a ``learning_rate`` that is
  not finite and > 0, or ``steps`` that is not a positive int.
  """
  if opt_name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {opt_name!r}; valid optimizers: {', '.join(OPTIMIZERS)}")
  try:
    lr = float(learning_rate)
  except (TypeError, ValueError):
    raise ValueError(f"learning_rate must be a number, got {learning_rate!r}") from None
  if not math.isfinite(lr) or lr <= 0:
    raise ValueError(f"learning_rate must be finite and > 0, got {learning_rate!r}")
  schedule = learning_rate_fn(lr, lr_schedule, steps)

  if opt_name == "sgd":
    base = optax.sgd(schedule)
  elif opt_name == "sgdm":
    base = optax.sgd(schedule, momentum=_MOMENTUM, nesterov=False)
  elif opt_name == "adam":
    base = optax.adam(schedule, b1=_BETAS[0], b2=_BETAS[1], eps=_EPS)
  else:
    base = optax.adamax(schedule, b1=_BETAS[0], b2=_BETAS[1], eps=_EPS)
  return optax.chain(base, project_to_initial_sphere())

