"""Options of the PULSE search: the reference's names and defaults, validated."""
from __future__ import annotations

import dataclasses
import math

NOISE_TYPES = ("zero", "fixed", "trainable")
OPT_NAMES = ("sgd", "adam", "sgdm", "adamax")
LR_SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
  """Static configuration of one compiled search (hashable: a jit static argument)."""
  loss_str: str = "100*L2+0.05*GEOCROSS"
  eps: float = 2e-3
  noise_type: str = "trainable"
  num_trainable_noise_layers: int = 5
  bad_noise_layers: str = "17"
  tile_latent: bool = False
  opt_name: str = "adam"
  learning_rate: float = 0.4
  steps: int = 100
  lr_schedule: str = "linear1cycledrop"
  seed: int = 0

  def __post_init__(self):
    from pulse_jax.losses import parse_loss_str
    parse_loss_str(self.loss_str)  # raises a clear ValueError on a bad string
    if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps >= 0):
      raise ValueError(f"eps must be a finite number >= 0, got {self.eps!r}.")
    if self.noise_type not in NOISE_TYPES:
      raise ValueError(f"noise_type must be one of {NOISE_TYPES}, got {self.noise_type!r}.")
    if self.opt_name not in OPT_NAMES:
      raise ValueError(f"opt_name must be one of {OPT_NAMES}, got {self.opt_name!r}.")
    if self.lr_schedule not in LR_SCHEDULES:
      raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}.")
    if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
      raise ValueError(f"learning_rate must be a finite number > 0, got {self.learning_rate!r}.")
    if not (isinstance(self.steps, int) and self.steps >= 1):
      raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}.")
    if self.num_trainable_noise_layers < 0:
      raise ValueError("num_trainable_noise_layers must be >= 0, got "
                       f"{self.num_trainable_noise_layers}.")
    self.bad_layers()  # parse check

  def bad_layers(self) -> tuple[int, ...]:
    """`bad_noise_layers` ('17', '16.17', or '' for none) as layer indices."""
    s = self.bad_noise_layers.strip()
    if not s:
      return ()
    try:
      return tuple(int(p) for p in s.split("."))
    except ValueError:
      raise ValueError(f"bad_noise_layers must be layer indices joined by '.', e.g. '17' or "
                       f"'16.17' (or '' for none), got {self.bad_noise_layers!r}.") from None

  def check_layers(self, num_layers: int) -> None:
    """Raises when a layer index is out of range for a generator with `num_layers` noise maps."""
    bad = [i for i in self.bad_layers() if not 0 <= i < num_layers]
    if bad:
      raise ValueError(
          f"bad_noise_layers {bad} out of range: this generator has noise layers 0..{num_layers - 1}"
          f". Pass e.g. --bad_noise_layers={num_layers - 1} or --bad_noise_layers=''.")
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
