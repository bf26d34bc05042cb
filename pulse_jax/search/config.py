"""Options of the PULSE search: the reference's names and defaults, validated.

`SEARCH` is the one definition of the search options (scope "search"); `SearchConfig`'s fields
are derived from it, and `pulse_jax.job.options` composes it into the registry behind the flags
of `python -m pulse_jax.run` and the keywords of `pulse_jax.upsample`. Adding a search option:
one `Option(...)` in `SEARCH` (the field, the flag, the keyword and the checks follow).

Nothing here imports jax (the loss table, `pulse_jax.search.losses`, is read on first use).
"""
from __future__ import annotations

import dataclasses

from pulse_jax.core.option import (Applies, Option, at_least, check_fields, finite, in_range,
                                   shown, with_option_fields)

NOISE_TYPES = ("zero", "fixed", "trainable")
OPT_NAMES = ("sgd", "adam", "sgdm", "adamax")
LR_SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")

# The search's random keys are jax.random.key(seed): a uint32 seed (2**32 would be 0 again).
SEED_MAX = 2 ** 32 - 1

HAS_NOISE = Applies(lambda g: bool(g.noise_shapes), "has no noise inputs")
HAS_CUT_POINTS = Applies(lambda g: bool(g.ilo_layers), "has no cut points for ILO")
HAS_STYLE_ROWS = Applies(lambda g: g.latent_layers(True) != g.latent_layers(False),
                         "has a single latent vector (nothing to tile)")


def bad_layers(value: str) -> tuple[int, ...]:
  """--bad_noise_layers ('17', '16.17', or '' for none) as layer indices; ValueError."""
  s = value.strip()
  if not s:
    return ()
  try:
    return tuple(int(p) for p in s.split("."))
  except ValueError:
    raise ValueError(f"must be layer indices joined by '.', e.g. '17' or '16.17' (or '' for "
                     f"none) (got {shown(value)})") from None


def ilo_layer_names(value: str) -> tuple[str, ...]:
  """--ilo_layers ('b4,b8', or '' for the generator's defaults) as cut-point names."""
  return tuple(p.strip() for p in value.split(",") if p.strip())


def _loss_str(v):
  from pulse_jax.search.losses import parse_loss_str  # jax: only when checked
  parse_loss_str(v)


def _loss_help() -> str:
  from pulse_jax.search.losses import loss_str_help  # the loss table names the terms
  return loss_str_help()


# The reference's search options (names, formats and defaults): SearchConfig's fields, in
# order. Each is of scope "search" and in the group "search" (`_search`).
def _search(*options: Option) -> tuple[Option, ...]:
  return tuple(dataclasses.replace(o, scope="search", group="search") for o in options)


SEARCH: tuple[Option, ...] = _search(
    Option("loss_str", str, "100*L2+0.05*GEOCROSS", _loss_help, check=_loss_str),
    Option("eps", float, 2e-3,
           "Success threshold on each restart's L2 (mean squared error of the down-sampled "
           "output); L2 is also clamped below at eps.",
           check=finite(0.0)),
    Option("noise_type", str, "trainable",
           "StyleGAN noise maps: zero, fixed (random) or trainable.",
           choices=NOISE_TYPES, applies=HAS_NOISE),
    Option("num_trainable_noise_layers", int, 5,
           "With --noise_type=trainable: how many noise layers (from the lowest resolution) "
           "are optimised.",
           check=at_least(0), applies=HAS_NOISE),
    Option("bad_noise_layers", str, "17",
           "Noise layers set to zero, joined by '.' (e.g. '16.17'; '' for none).",
           check=bad_layers, applies=HAS_NOISE),
    Option("tile_latent", bool, False,
           "Search one latent vector shared by every style layer (StyleGAN) instead of W+.",
           applies=HAS_STYLE_ROWS),
    Option("opt_name", str, "adam", "Optimiser (with the spherical projection).",
           choices=OPT_NAMES),
    Option("learning_rate", float, 0.4, "Peak learning rate.",
           check=finite(0.0, strict=True)),
    Option("steps", int, 100, "Optimisation steps per restart.",
           check=at_least(1, what="an integer")),
    Option("lr_schedule", str, "linear1cycledrop", "Learning-rate schedule.",
           choices=LR_SCHEDULES),
    Option("stop_within", int, 0,
           "Anytime search: end an image's search once this many of its restarts are within "
           "eps (after --stop_extra_steps more steps); its restarts stop changing and, once "
           "every image of a batch has ended, the batch stops. 0: run every step (the "
           "reference's behaviour).",
           check=at_least(0)),
    Option("stop_extra_steps", int, 0,
           "With --stop_within: steps an image still runs after its --stop_within-th restart "
           "reached eps (the restarts within eps refine, the others may still reach it).",
           check=at_least(0)),
    Option("ilo", bool, False,
           "Intermediate-layer search (ILO, Daras et al. 2021) after the latent search: at each "
           "cut point of --ilo_layers in turn, the generator's activation there is searched "
           "for --ilo_steps steps inside an l1 ball (--ilo_radius) around what the previous "
           "search produced, so the output may leave the generator's range a little. The "
           "steps add to --steps.",
           applies=HAS_CUT_POINTS),
    Option("ilo_layers", str, "",
           "With --ilo: the cut points searched, in network order, joined by ',' (e.g. "
           "'b4,b8'); '' for the generator's defaults (docs/search.md lists each family's); "
           "an unknown name's error lists the generator's cut points.",
           applies=HAS_CUT_POINTS),
    Option("ilo_steps", int, 100, "With --ilo: steps per cut point.",
           check=at_least(1, what="an integer"), applies=HAS_CUT_POINTS),
    Option("ilo_radius", float, 0.1,
           "With --ilo: radius of each layer's l1 ball, as a fraction of the l1 norm of the "
           "activation it starts from (0.1: the activation may change by 10% of its size).",
           check=finite(0.0, strict=True), applies=HAS_CUT_POINTS),
    Option("ilo_learning_rate", float, 0.05,
           "With --ilo: Adam's learning rate for the activations (constant).",
           check=finite(0.0, strict=True), applies=HAS_CUT_POINTS),
    Option("seed", int, 0,
           "Random seed (honoured, 0 included): a restart's start depends only on the seed, "
           "the input's pixels and the restart index. 0..4294967295 (the uint32 seed of "
           "jax.random.key).",
           check=in_range(0, SEED_MAX, "the uint32 seed of jax.random.key"),
           presettable=False),
)


@with_option_fields(SEARCH)
class SearchConfig:
  """Static configuration of one compiled search (hashable: a jit static argument).

  Fields: one per option of `SEARCH`, in order (`loss_str`, `eps`, ..., `seed`), with its
  default; every field is checked (ValueError naming the field: 'steps must be an integer
  >= 1 (got 0)').
  """

  def __post_init__(self):
    check_fields(self)

  def bad_layers(self) -> tuple[int, ...]:
    """`bad_noise_layers` ('17', '16.17', or '' for none) as layer indices."""
    try:
      return bad_layers(self.bad_noise_layers)
    except ValueError as e:
      raise ValueError(f"bad_noise_layers {e}") from None

  def check_layers(self, num_layers: int) -> None:
    """Raises when a layer index is out of range for a generator with `num_layers` noise maps."""
    bad = [i for i in self.bad_layers() if not 0 <= i < num_layers]
    if bad:
      listed = ", ".join(map(str, bad[:8])) + (f" ... and {len(bad) - 8} more" if len(bad) > 8
                                                else "")
      raise ValueError(
          f"bad_noise_layers {listed} out of range: this generator has noise layers "
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
