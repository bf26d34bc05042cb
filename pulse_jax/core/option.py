"""The record of one option and what a table of them derives; imports nothing from pulse_jax.

Each layer keeps the table of its own options (`pulse_jax.search.config.SEARCH`,
`pulse_jax.forward.options.OPTIONS`); `pulse_jax.job.options` composes them with the job's own
into the registry behind the flags, `RunOptions` and the API keywords. An `Option` knows no
flags: it validates a value (ValueError('must be ...'), without the option's name) and the layer
that reports it names it ('--steps: ...' in the job, 'steps ...' in `SearchConfig`).

Nothing here imports jax: importing this module is cheap.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import os
import typing
from typing import Any, Callable, Iterable, NamedTuple


class Applies(NamedTuple):
  """Which generators an option means something for.

  predicate: generator -> bool (asks the generator, e.g. `bool(g.noise_shapes)`); reason:
  completes 'the <kind> generator ...' in the note printed when such an option is given to a
  generator it does not apply to (e.g. 'has no noise inputs').
  """
  predicate: Callable[[Any], bool]
  reason: str


# ----------------------------------------------------------------------------- checks
# A check raises ValueError('must be ...') for a bad value; the message does not name the
# option (the job writes '--name: ...', SearchConfig 'name ...').

def at_least(bound, what: str = "", note: str = "") -> Callable[[Any], None]:
  """value >= bound, e.g. 'must be >= 1 (got 0)' ('must be an integer >= 1' with what='an
  integer'). A flag gets it as its lower bound too (`lower_bound`)."""
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
  """lo <= value <= hi: 'must be in 0..4294967295 (why) (got ...)'. A flag gets both bounds."""
  def check(v):
    if not lo <= v <= hi:
      raise ValueError(f"must be in {lo}..{hi}{f' ({why})' if why else ''} (got {v!r})")
  check.lower_bound = lo
  check.upper_bound = hi
  return check


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


# ----------------------------------------------------------------------------- an option

SCOPES = ("search", "job", "cli")


@dataclasses.dataclass(frozen=True)
class Option:
  """One option: flag `--name`, `RunOptions.name`, keyword `api_name or name` of `upsample`.

  type: int, float, bool, str or os.PathLike (a path: str or PathLike, kept as str);
  default: the global default (a built-in model's preset may replace it); help: the text, or
  a function returning it (for text read from a module that imports jax); check: raises
  ValueError('must be ...') for a bad value of the right type (see `at_least`, `finite`);
  choices: the allowed values (an enum flag); optional: None is allowed (not set);
  applies: the generators it means something for (None: every one); scope: "search" (also a
  `SearchConfig` field), "job" (`RunOptions` and the API) or "cli" (a flag only); group: its
  group in --helpfull ('' until the job's registry sets it); api: an `upsample` keyword;
  setting: recorded in the reports' "settings", which a re-run compares unless affects_result
  is False (speed and memory only); presettable: a preset may set it.
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

  @property
  def annotation(self):
    """The type of a dataclass field holding the value (a path is a str; Optional when None
    is allowed)."""
    t = str if self.type is os.PathLike else self.type
    return typing.Optional[t] if self.optional or self.default is None else t

  def help_text(self) -> str:
    """The help (`help` may be a function, for text that names other modules' values)."""
    return self.help() if callable(self.help) else self.help

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


# ----------------------------------------------------------------------------- option dataclasses

def field_of(option: Option) -> dataclasses.Field:
  """A dataclass field holding `option`: its default, and the option in the metadata."""
  return dataclasses.field(default=option.default, metadata={"option": option})


def with_option_fields(options: Iterable[Option]):
  """Class decorator: a frozen (hashable) dataclass whose fields are the class's own
  annotated fields, then one per option of `options` in order (`field_of`).

  Adding an option to the table adds the field; the class body holds only the methods.
  """
  options = tuple(options)

  def decorate(cls):
    own = dict(cls.__dict__.get("__annotations__", {}))
    for o in options:
      if o.name in own:
        raise ValueError(f"{cls.__name__}: option {o.name!r} is also a field of its own")
      own[o.name] = o.annotation
      setattr(cls, o.name, field_of(o))
    cls.__annotations__ = own
    return dataclasses.dataclass(frozen=True)(cls)
  return decorate


def check_fields(instance) -> None:
  """Checks (and normalises) every field of a frozen dataclass that holds an option
  (`field_of`); raises ValueError('steps must be an integer >= 1 (got 0)')."""
  for f in dataclasses.fields(instance):
    o = f.metadata.get("option")
    if o is None:
      continue
    try:
      value = o.validate(getattr(instance, f.name))
    except ValueError as e:
      raise ValueError(f"{f.name} {short_message(e)}") from None
    object.__setattr__(instance, f.name, value)
