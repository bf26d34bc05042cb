"""Options of the PULSE search: the reference's names and defaults, validated.

The fields, their defaults and their checks are the options of scope "search" in
`pulse_jax.job.options` (the one definition of every option, also behind the flags of
`python -m pulse_jax.run` and the keywords of `pulse_jax.upsample`).
"""
from __future__ import annotations

import dataclasses

from pulse_jax.job import options
from pulse_jax.job.options import LR_SCHEDULES, NOISE_TYPES, OPT_NAMES  # noqa: F401  (re-exported)

_f = options.config_field


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Static configuration of one compiled search (hashable: a jit static argument)."""
  loss_str: str = _f("loss_str")
  eps: float = _f("eps")
  noise_type: str = _f("noise_type")
  num_trainable_noise_layers: int = _f("num_trainable_noise_layers")
  bad_noise_layers: str = _f("bad_noise_layers")
  tile_latent: bool = _f("tile_latent")
  opt_name: str = _f("opt_name")
  learning_rate: float = _f("learning_rate")
  steps: int = _f("steps")
  lr_schedule: str = _f("lr_schedule")
  seed: int = _f("seed")

  def __post_init__(self):
    options.check_config(self)  # ValueError naming the field: 'steps must be an integer >= 1 ...'

  def bad_layers(self) -> tuple[int, ...]:
    """`bad_noise_layers` ('17', '16.17', or '' for none) as layer indices."""
    try:
      return options.bad_layers(self.bad_noise_layers)
    except ValueError as e:
      raise ValueError(f"bad_noise_layers {e}") from None

  def check_layers(self, num_layers: int) -> None:
    """Raises when a layer index is out of range for a generator with `num_layers` noise maps."""
    bad = [i for i in self.bad_layers() if not 0 <= i < num_layers]
    if bad:
      shown = ", ".join(map(str, bad[:8])) + (f" ... and {len(bad) - 8} more" if len(bad) > 8
                                               else "")
      raise ValueError(
          f"bad_noise_layers {shown} out of range: this generator has noise layers "
          f"0..{num_layers - 1}. Pass e.g. --bad_noise_layers={num_layers - 1} or "
          "--bad_noise_layers=''.")
    if self.noise_type == "trainable" and self.num_trainable_noise_layers > num_layers:
      raise ValueError(f"num_trainable_noise_layers={self.num_trainable_noise_layers} exceeds the "
                       f"generator's {num_layers} noise layers.")

  def noise_layer_kinds(self, num_layers: int) -> tuple[str, ...]:
    """Per layer: 'zero', 'fixed' (random, not optimised) or 'trainable', as the reference."""
    bad = set(self.bad_layers())
    kinds = []
    for i in range(num_layers):
      if self.noise_type == "zero" or i in bad:
        kinds.append("zero")
      elif self.noise_type == "fixed" or i >= self.num_trainable_noise_layers:
        kinds.append("fixed")
      else:
        kinds.append("trainable")
    return tuple(kinds)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
