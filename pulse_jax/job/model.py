"""The generator of a job: loading what --weights names, and what the job asks about its family.

Every question the job asks about the generator's family is a small function here
(`uses_compute_dtype`, `uses_remat` from `pulse_jax.job.options`, `loss_for_generator`,
`check_layers`, `generator_notes`), answered by the generator interface (`pulse_jax.generators`)
and the loss table (`pulse_jax.search.losses.LOSS_TERMS`), never by testing the kind.
"""
from __future__ import annotations

import dataclasses
import os

from pulse_jax.job import options
from pulse_jax.job.errors import UsageError


@dataclasses.dataclass(frozen=True, eq=False)
class Model:
  """Loaded generator weights (`pulse_jax.load_generator`).

  name: what --weights named (a built-in model or a converted weights directory; the built-in
  default's name when none was given); given: whether a name was given; path: the converted
  weights directory; weights: the `checkpoint.GeneratorWeights` (params and metadata).
  """
  name: str
  path: str
  weights: object
  given: bool = True

  @property
  def kind(self) -> str:
    return self.weights.kind

  @property
  def resolution(self) -> int:
    from pulse_jax.generators import family
    return int(family(self.kind).resolution(self.weights.config))

  @property
  def params(self) -> dict:
    return self.weights.params

  def generator(self, compute_dtype: str = "float32", remat: bool = False):
    """The `generators.Generator` to search with (UsageError naming --weights)."""
    from pulse_jax import generators
    try:
      return generators.from_weights(self.weights, compute_dtype, remat)
    except ValueError as e:
      raise UsageError(f"--weights={self.name}: {e}") from None

  def __repr__(self) -> str:
    return f"Model({self.name!r}, kind={self.kind!r}, resolution={self.resolution})"


def load_model(weights=None, log=print) -> Model:
  """The model --weights names (None: the built-in default); UsageError naming the flag."""
  from pulse_jax.job import builtin_models
  name = os.fspath(weights) if weights else builtin_models.DEFAULT_MODEL
  try:
    path = builtin_models.resolve(name, log=log)
    w = builtin_models.load(path, log=log)
  except (FileNotFoundError, ValueError) as e:
    msg = str(e)
    raise UsageError(msg if msg.startswith("--weights") else f"--weights={name}: {msg}") from None
  return Model(name, path, w, given=bool(weights))


def weights_info(model: Model) -> dict:
  """The weights as the reports record them."""
  meta = model.weights.metadata or {}
  return {"name": model.name if model.given else f"{model.name} (built-in default)",
          "path": os.path.abspath(model.path), "kind": model.kind,
          "resolution": model.resolution,
          "sources": [{"file": s.get("file"), "sha256": s.get("sha256")}
                      for s in meta.get("sources", [])],
          "pulse_jax_version": meta.get("pulse_jax_version")}


# ----------------------------------------------------------------------------- family questions
# Whether --compute_dtype / --remat change how a generator computes (asked of its family).
uses_compute_dtype = options.uses_compute_dtype
uses_remat = options.uses_remat


def _listed(names: list[str]) -> str:
  return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def loss_for_generator(loss_str: str, generator) -> tuple[str, list[str]]:
  """The loss string to search with, and notes: the terms of the loss table
  (`pulse_jax.search.losses.LOSS_TERMS`) that do not apply to `generator` are dropped (e.g.
  GEOCROSS, which needs W+, for the DCGAN), one note per term; UsageError when none is left."""
  from pulse_jax.search.losses import LOSS_TERMS, parse_loss_str
  terms = parse_loss_str(loss_str)
  dropped = [n for _, n in terms if not LOSS_TERMS[n].applies_to(generator)]
  if not dropped:
    return loss_str, []
  kept = [(w, n) for w, n in terms if n not in dropped]
  if not kept:
    why = "; ".join(LOSS_TERMS[n].lacks for n in dropped)
    usable = " or ".join(n for n, t in LOSS_TERMS.items() if t.applies_to(generator))
    raise UsageError(f"--loss_str={loss_str!r} has only {_listed(dropped)}, which "
                     f"do{'es' * (len(dropped) == 1)} not apply to the {generator.kind} "
                     f"generator ({why}); add an {usable} term.")
  new = "+".join(f"{w:g}*{n}" for w, n in kept)
  return new, [f"note: {n} does not apply to the {generator.kind} generator "
               f"({LOSS_TERMS[n].note_why}): searching with --loss_str={new!r}" for n in dropped]


def search_params(model: Model, generator, class_index: int | None) -> dict:
  """The params the search uses: a conditional model's with its class's prior
  (UsageError naming --class_index); for other models --class_index is ignored (a note)."""
  if not generator.num_classes:
    return model.params
  try:
    return generator.search_params(model.params, class_index)
  except ValueError as e:
    raise UsageError(f"--class_index: {e}") from None


def check_layers(config, generator) -> None:
  """The noise-layer and ILO-layer options against the generator's noise layers and cut points
  (UsageError naming the flag)."""
  from pulse_jax.job.settings import config_flag_message
  from pulse_jax.search import ilo
  try:
    ilo.layers(config, generator)
  except ValueError as e:
    raise UsageError(config_flag_message(e)) from None
  if not generator.noise_shapes:
    return
  try:
    config.check_layers(len(generator.noise_shapes))
  except ValueError as e:
    raise UsageError(config_flag_message(e)) from None


def generator_notes(o, generator) -> list[str]:
  """One note per reason that options given (or set by the preset) do not apply to
  `generator` (`Option.applies`), e.g. the noise options for the DCGAN."""
  from pulse_jax.job.settings import source_of
  by_reason: dict[str, list[str]] = {}
  for opt in options.run_options():
    if source_of(o, opt.name) != "default" and not opt.applies_to(generator):
      by_reason.setdefault(opt.applies.reason, []).append(f"--{opt.name}")
  notes = []
  for reason, names in by_reason.items():
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    notes.append(f"note: the {generator.kind} generator {reason}: {listed} "
                 f"do{'es' * (len(names) == 1)} not apply")
  return notes
