"""`RunOptions`, the options of a job (derived from `pulse_jax.job.options`), presets and sources.

A `RunOptions` holds the options as given: `given_names()` are the keywords it was built with
(from the command line: the flags given). `resolve` makes the options a job runs with: each
given option as given, else the built-in model's preset (`pulse_jax.job.builtin_models.PRESETS`, looked up
by the --weights name; a converted weights directory has none), else the generator family's
default for that architecture (`Family.search_defaults`, read from a converted directory's
metadata.json: e.g. StyleGAN2 zeroes its LAST noise layer where v1's default '17' names layer
17), else the global default; `sources` says which ('given', 'preset', 'family' or 'default')
and `record` puts both in the reports.
"""
from __future__ import annotations

import dataclasses
import os

from pulse_jax.core.option import field_of
from pulse_jax.job import options
from pulse_jax.job.errors import UsageError
from pulse_jax.search.config import SearchConfig


def _init(self, **values) -> None:
  """RunOptions(name=value, ...): every option of the job by keyword; the others take their
  global default (and a model preset may replace them: `resolve`)."""
  unknown = sorted(set(values) - set(NAMES))
  if unknown:
    raise TypeError(f"RunOptions got unknown option(s) {', '.join(unknown)}; valid: "
                    f"{', '.join(NAMES)}")
  for o in options.run_options():
    setattr(self, o.name, values[o.name] if o.name in values else o.default)
  self._given = frozenset(values)
  self._baseline = {o.name: o.default for o in options.run_options()}  # the values not given
  self.sources = {}      # by `resolve`: name -> 'given' | 'preset' | 'family' | 'default'
  self.preset = None     # by `resolve`: the preset's model name, or None
  self.family = None     # by `resolve`: the kind whose family defaults apply, or None
  self.capped = {}       # by `resolve`: name -> the preset's value, where capped at --restarts


def _given_names(self) -> frozenset:
  """The options given: passed to the constructor, or set to another value since (an option
  not given holds its default, or after `resolve` its preset)."""
  return frozenset(self._given | {n for n, v in self._baseline.items() if getattr(self, n) != v})


def _replace(self, **changes) -> "RunOptions":
  """A copy with `changes` given (dataclasses.replace would mark every option given)."""
  return RunOptions(**{n: getattr(self, n) for n in self.given_names()}, **changes)


def _search_config(self, loss_str: str | None = None) -> SearchConfig:
  """The compiled search's static config (`loss_str`: the loss after dropping the terms that
  do not apply to the generator, default: as given)."""
  values = {o.name: getattr(self, o.name) for o in options.config_options()}
  if loss_str:
    values["loss_str"] = loss_str
  return SearchConfig(**values)


NAMES = tuple(o.name for o in options.run_options())

RunOptions = dataclasses.make_dataclass(
    "RunOptions",
    [(o.name, o.annotation, field_of(o)) for o in options.run_options()],
    namespace={"__init__": _init, "given_names": _given_names, "replace": _replace,
               "search_config": _search_config,
               "__doc__": "Every option of the job (the flags of `python -m pulse_jax.run`, "
                          "same names), defined in `pulse_jax.job.options`."})
RunOptions.__module__ = __name__


# ----------------------------------------------------------------------------- presets

def preset_for(model_name) -> tuple[str | None, dict]:
  """(name, values) of the preset of the model `--weights=model_name` names (None: the
  built-in default); (None, {}) for a converted weights directory or a model without one."""
  from pulse_jax.job import builtin_models
  name = os.fspath(model_name) if model_name else builtin_models.DEFAULT_MODEL
  if name not in builtin_models.BUILTIN or name not in builtin_models.PRESETS:
    return None, {}
  preset = dict(builtin_models.PRESETS[name])
  for k in preset:
    o = options.OPTIONS.get(k)
    if o is None or o.scope == "cli" or not o.presettable:
      raise ValueError(f"pulse_jax.job.builtin_models.PRESETS[{name!r}]: {k!r} is not an option a preset "
                       f"may set; presettable: "
                       f"{', '.join(o.name for o in options.run_options() if o.presettable)}")
  return name, preset


def family_defaults_for(model_name) -> tuple[str | None, dict]:
  """(kind, values) of `Family.search_defaults` for the converted weights directory that
  `--weights=model_name` names; (None, {}) for a built-in model (its preset plays that role),
  a name that is not a weights directory or unreadable metadata (loading reports those)."""
  from pulse_jax.job import builtin_models
  name = os.fspath(model_name) if model_name else builtin_models.DEFAULT_MODEL
  path = os.path.join(name, "metadata.json")
  if name in builtin_models.BUILTIN or not os.path.isfile(path):
    return None, {}
  try:  # read and checked as loading does (weights_dir.read_metadata; bounded, no traceback)
    from pulse_jax.io import weights_dir
    from pulse_jax.generators import family
    meta = weights_dir.read_metadata(name)
    fam = family(meta["kind"])
    values = dict(fam.search_defaults(weights_dir.config_from_metadata(fam.kind, meta["config"])))
  except (OSError, ValueError, KeyError, TypeError):
    return None, {}
  for k in values:
    o = options.OPTIONS.get(k)
    if o is None or o.scope == "cli" or not o.presettable:
      raise ValueError(f"{type(fam).__name__}.search_defaults: {k!r} is not an option a "
                       "family may set.")
  return fam.kind, values


# Preset values that count restarts: a preset's value is capped at the --restarts the job runs
# with (a given --restarts smaller than the preset's keeps working; given values are checked).
PRESET_AT_MOST_RESTARTS = ("duplicates", "stop_within")


def resolve(o: RunOptions, model_name=None) -> RunOptions:
  """The options a job runs with (see the module docstring), with `sources`, `preset` and
  `family`.

  model_name: the model whose preset and family defaults apply (default: `o.weights`, None:
  the built-in default).
  """
  model_name = o.weights if model_name is None else model_name
  name, preset = preset_for(model_name)
  kind, fam = family_defaults_for(model_name)
  given = o.given_names()
  values, sources = {}, {}
  for opt in options.run_options():
    if opt.name in given:
      values[opt.name], sources[opt.name] = getattr(o, opt.name), "given"
    elif opt.name in preset:
      values[opt.name], sources[opt.name] = preset[opt.name], "preset"
    elif opt.name in fam:
      values[opt.name], sources[opt.name] = fam[opt.name], "family"
    else:
      values[opt.name], sources[opt.name] = opt.default, "default"
  capped = {}
  for n in PRESET_AT_MOST_RESTARTS:  # e.g. --restarts=2 given: the preset's keep 4 becomes 2
    if sources.get(n) == "preset" and values[n] > values["restarts"]:
      capped[n], values[n] = values[n], values["restarts"]
  r = RunOptions(**{n: v for n, v in values.items() if n in given})
  for n, v in values.items():
    setattr(r, n, v)
  r._baseline = dict(values)
  r.sources, r.preset, r.capped = sources, name, capped
  r.family = kind if any(s == "family" for s in sources.values()) else None
  return r


# ----------------------------------------------------------------------------- checks

def config_flag_message(e: Exception) -> str:
  """A SearchConfig error as '--flag: message' when it names an option first, else as is."""
  m = str(e)
  for f in dataclasses.fields(SearchConfig):
    if m.startswith(f.name) and m[len(f.name):len(f.name) + 1] in (" ", "=", ":"):
      return options.flag_message(f.name, m)
  return m


def check_options(o: RunOptions) -> None:
  """Raises UsageError naming every bad option ('--flag: what is wrong; --flag2: ...');
  otherwise normalises the values (ints, floats, str paths)."""
  why = {n: f"(the {o.preset} preset)" for n, s in o.sources.items() if s == "preset"}
  why.update({n: f"(the {o.family} family default)" for n, s in o.sources.items()
              if s == "family"})
  values, found = options.problems({n: getattr(o, n) for n in NAMES}, why=why)
  if not found:
    try:  # a rule of SearchConfig over several options
      o.search_config()
    except (ValueError, TypeError) as e:
      found.append(config_flag_message(e))
  if found:
    raise UsageError("; ".join(found))
  for n, v in values.items():
    setattr(o, n, v)


# ----------------------------------------------------------------------------- reports

def source_of(o: RunOptions, name: str) -> str:
  """'given', 'preset', 'family' or 'default' (before `resolve`: 'given' or 'default')."""
  if o.sources:
    return o.sources[name]
  return "given" if name in o.given_names() else "default"


def record(o: RunOptions, generator) -> dict:
  """{'preset': name or None, 'options': {name: {'value': v, 'source': s}}} of every option
  of the job that applies to `generator` (what the reports and the summary record); a preset
  value capped at --restarts also records the preset's own ({..., 'preset_value': 4})."""
  out = {}
  for opt in options.run_options():
    if opt.applies_to(generator):
      out[opt.name] = {"value": getattr(o, opt.name), "source": source_of(o, opt.name)}
      if opt.name in o.capped:
        out[opt.name]["preset_value"] = o.capped[opt.name]
  return {"preset": o.preset, "options": out}


def settings(o: RunOptions, config: SearchConfig, generator) -> dict:
  """The settings recorded in every report and compared when a run is started again: the
  search config as searched ('loss_str' after dropping terms that do not apply,
  'loss_str_given' as given) and the job's `setting` options, those that apply to `generator`."""
  out = {}
  for opt in options.config_options():
    if opt.setting and opt.applies_to(generator):
      out[opt.name] = getattr(config, opt.name)
  out["loss_str_given"] = o.loss_str
  for opt in options.run_options():
    if opt.scope != "search" and opt.setting and opt.applies_to(generator):
      out[opt.name] = getattr(o, opt.name)
  return out
