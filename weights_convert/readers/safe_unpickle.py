"""An allow-list unpickler: a pickle gets only the globals a reader names, nothing else.

A pickle is a small program: its GLOBAL / STACK_GLOBAL / INST / EXT opcodes import any
``module.name`` and REDUCE calls it. ``SafeUnpickler.find_class`` is the single door through
which all of those pass (in both the C and the pure-Python unpickler), so it answers only from
an explicit table of ``(module, name) -> object`` and refuses everything else with
``UnsafePickleError`` *before* anything is imported or called. The table's objects are this
package's own small constructors (returning plain containers / numpy data) or sealed tokens,
never the real foreign class or function of that name.

Two hardening rules for table entries:

* callables are wrapped in ``AllowedCallable`` and tokens derive from ``Sealed``, and stub
  classes use the ``ImmutableType`` metaclass, so a BUILD opcode cannot set attributes on a
  table entry (changing how later files load) or on a value after it was checked;
* persistent ids (torch's storage records) go to the reader's own ``persistent_load``; a
  pickle with a persistent id where the reader expects none is refused.

Before unpickling, ``safe_load`` walks the pickle's opcodes (``check_pickle``) without building
anything: the C unpickler allocates a counted string / bytes / frame from the length the file
states and a memo slot from the index it states, before reading them, so a few bytes could
ask for gigabytes. Lengths beyond the bytes left in the file and absurd memo indices are
refused first (see ``weights_convert.readers.limits``).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import pickletools
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

from weights_convert.readers.errors import UnsafePickleError, WeightFileError, describe
from weights_convert.readers.limits import SizeRefusal, out_of_memory

__all__ = [
    "AllowedCallable",
    "ImmutableType",
    "PLAIN_CONTAINERS",
    "Sealed",
    "SafeUnpickler",
    "UnsafePickleError",
    "WeightFileError",
    "check_pickle",
    "safe_load",
]

DEFAULT_HINT = (
    "If it is a trusted file of another kind, convert a trusted copy with the tool that "
    "wrote it (e.g. re-save only the state_dict / the numpy arrays); otherwise this is not a "
    "StyleGAN / torch weight file and should not be loaded."
)


class Sealed:
  """Base for objects a pickle can reach: attributes are set once in ``__init__``.

  A pickle's BUILD opcode calls ``__setstate__`` or sets attributes / ``__dict__`` items on
  any object it holds; here all three fail, so a file cannot alter a table entry (and so
  later loads) or a value after it was checked. (A frozen slotted dataclass would not do:
  it gets a ``__setstate__`` that writes its fields.)
  """

  __slots__ = ()

  def _set(self, **fields: Any) -> None:
    for name, value in fields.items():
      object.__setattr__(self, name, value)

  def __setattr__(self, name: str, value: Any) -> None:
    raise AttributeError(f"{type(self).__name__} is read-only (refusing to set {name!r})")

  def __delattr__(self, name: str) -> None:
    raise AttributeError(f"{type(self).__name__} is read-only (refusing to delete {name!r})")

  def __setstate__(self, state: Any) -> None:
    raise ValueError(f"a pickle may not modify this {type(self).__name__}")

  def __repr__(self) -> str:
    fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__)
    return f"{type(self).__name__}({fields})"


class AllowedCallable(Sealed):
  """An allow-listed function a pickle may call (REDUCE); sealed so BUILD cannot alter it."""

  __slots__ = ("qualname", "fn")

  def __init__(self, qualname: str, fn: Callable[..., Any]) -> None:
    self._set(qualname=qualname, fn=fn)

  def __call__(self, *args: Any) -> Any:
    return self.fn(*args)


class ImmutableType(type):
  """Metaclass for stub classes handed to pickles: their attributes cannot be (re)set."""

  def __setattr__(cls, name: str, value: Any) -> None:
    raise AttributeError(f"{cls.__qualname__} is read-only (refusing to set {name!r})")

  def __delattr__(cls, name: str) -> None:
    raise AttributeError(f"{cls.__qualname__} is read-only (refusing to delete {name!r})")


def _latin1_encode(text: object, encoding: object = "latin1") -> bytes:
  """What protocol-2 pickles call (``_codecs.encode(str, 'latin1')``) to rebuild ``bytes``."""
  if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
    raise ValueError("_codecs.encode is only allowed as encode(str, 'latin1')")
  return text.encode("latin1")


def _bytes(*args: object) -> bytes:
  """Protocol-2 pickles write ``b''`` as ``bytes()``; nothing else is accepted."""
  if args:
    raise ValueError("bytes(...) is only allowed without arguments")
  return b""


# Plain Python containers that ordinary weight pickles use (both spellings of builtins:
# protocol-2 pickles written by Python 3 say ``__builtin__``).
PLAIN_CONTAINERS: Mapping[tuple[str, str], object] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("_codecs", "encode"): AllowedCallable("_codecs.encode", _latin1_encode),
    ("builtins", "bytes"): AllowedCallable("bytes", _bytes),
    ("__builtin__", "bytes"): AllowedCallable("bytes", _bytes),
}


class SafeUnpickler(pickle.Unpickler):
  """``pickle.Unpickler`` that resolves globals only from ``allowed``.

  Args:
    file: binary file positioned at the start of a pickle; left just after its STOP.
    source: the file's path, for error messages.
    allowed: ``(module, name) -> object`` table; nothing outside it is ever imported.
    persistent_load: the reader's handler for persistent ids, or None to refuse them.
    what: what the table is for ("torch weight files"), for error messages.
    hint: how to fix a refusal, appended to the message.
  """

  def __init__(
      self,
      file: BinaryIO,
      *,
      source: str | os.PathLike | None,
      allowed: Mapping[tuple[str, str], object],
      persistent_load: Callable[[Any], Any] | None = None,
      what: str = "weight files",
      hint: str = DEFAULT_HINT,
      encoding: str = "ASCII",
  ) -> None:
    super().__init__(file, fix_imports=False, encoding=encoding)
    self._source = source
    self._allowed = dict(allowed)
    self._persistent = persistent_load
    self._what = what
    self._hint = hint

  def find_class(self, module: str, name: str) -> object:
    key = (module, name)
    if key in self._allowed:
      return self._allowed[key]
    raise UnsafePickleError(
        f"refused to load {describe(self._source)}: its pickle asks for the global "
        f"'{module}.{name}', which is not on the allow-list for {self._what}. Nothing "
        f"from the file was imported or run. {self._hint}"
    )

  def persistent_load(self, pid: Any) -> object:
    if self._persistent is None:
      raise UnsafePickleError(
          f"refused to load {describe(self._source)}: its pickle holds a persistent id "
          f"({_short(pid)}), which {self._what} never contain. Nothing from the file "
          f"was imported or run. {self._hint}"
      )
    return self._persistent(pid)


def safe_load(file: BinaryIO, **kwargs: Any) -> object:
  """Load one pickle from ``file`` with ``SafeUnpickler(file, **kwargs)``.

  A seekable ``file`` is first checked with ``check_pickle`` (nothing is allocated from a
  length the file states before that length is known to be there). Any failure other than a
  refusal (bad opcode, truncation, a constructor rejecting its arguments, ...) becomes
  ``WeightFileError`` naming the file, a ``MemoryError`` included; refusals stay
  ``UnsafePickleError``.
  """
  source = kwargs.get("source")
  if getattr(file, "seekable", lambda: False)():
    check_pickle(file, source=source)
  unpickler = SafeUnpickler(file, **kwargs)
  try:
    return unpickler.load()
  except WeightFileError:
    raise
  except MemoryError as e:
    raise out_of_memory(source, "its pickle", e) from e
  except SizeRefusal as e:
    raise WeightFileError(f"refused to load {describe(source)}: {e}") from e
  except EOFError as e:
    raise WeightFileError(
        f"{describe(source)} is truncated: its pickle ends early ({e or 'EOF'})"
    ) from e
  except (Exception, RecursionError) as e:  # noqa: BLE001 - anything a hostile file can cause
    raise WeightFileError(
        f"{describe(source)} is corrupt or not a weight file: its pickle "
        f"could not be read ({type(e).__name__}: {e})"
    ) from e


# Counted arguments (pickletools' descriptors): width of the length field, signed or not.
_COUNTED = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_MEMO_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")
# Python's pickler numbers memo slots 0, 1, 2, ...: a slot never exceeds the opcodes before
# it. The C unpickler sizes its memo table from the index (8 bytes x 2 x index), so indices
# beyond that (plus some slack for other writers) are refused.
_MEMO_SLACK = 1 << 16


def check_pickle(file: BinaryIO, *, source: str | os.PathLike | None = None) -> None:
  """Refuse a pickle that states sizes its file cannot back, before it is unpickled.

  Walks the opcodes from ``file``'s position to STOP without building anything, then seeks
  back. Counted data (strings, bytes, bytearrays, longs; protocol-4 frames) may not be
  longer than the bytes left in the file, and a memo index may not exceed the opcodes read
  so far (+ 65536): otherwise the unpickler would allocate that much before noticing the
  data is missing.

  Raises:
    WeightFileError: a stated size exceeds the file, or the pickle is malformed / truncated.
  """
  start = file.tell()
  end = file.seek(0, io.SEEK_END)
  file.seek(start)
  try:
    _scan(file, end, describe(source))
  finally:
    file.seek(start)


def _scan(file: BinaryIO, end: int, src: str) -> None:
  ops = 0
  while True:
    pos = file.tell()
    code = file.read(1)
    if not code:
      raise WeightFileError(f"{src} is truncated: its pickle ends early (no STOP opcode)")
    op = pickletools.code2op.get(code.decode("latin-1"))
    if op is None:
      raise WeightFileError(f"{src} is corrupt or not a weight file: byte {pos} of its "
                            f"pickle ({code!r}) is not a pickle opcode")
    ops += 1
    arg = op.arg
    if arg is not None and arg.n in _COUNTED:
      width, signed = _COUNTED[arg.n]
      head = file.read(width)
      if len(head) < width:
        raise WeightFileError(f"{src} is truncated: its pickle ends inside {op.name}")
      count = int.from_bytes(head, "little", signed=signed)
      _check_stated(src, op.name, pos, count, end - pos - 1 - width)
      file.seek(count, io.SEEK_CUR)
    elif arg is not None:
      try:
        value = arg.reader(file)
      except (ValueError, UnicodeDecodeError) as e:
        raise WeightFileError(f"{src} is corrupt or not a weight file: its pickle's "
                              f"{op.name} at byte {pos} is malformed ({e})") from e
      if op.name == "FRAME":
        _check_stated(src, op.name, pos, value, end - file.tell())
      elif op.name in _MEMO_PUTS and value > ops + _MEMO_SLACK:
        raise WeightFileError(
            f"refused to load {src}: its pickle's {op.name} at byte {pos} uses memo slot "
            f"{value} after only {ops} opcodes (the unpickler would size its memo table "
            "from it); a pickle written by Python never does this: the file is corrupt "
            "or hostile"
        )
    if op.name == "STOP":
      return


def _check_stated(src: str, opname: str, pos: int, count: int, left: int) -> None:
  if count < 0 or count > left:
    raise WeightFileError(
        f"refused to load {src}: its pickle's {opname} at byte {pos} states {count} bytes "
        f"of data but only {max(left, 0)} follow in the file; nothing was allocated for it "
        "(the file is truncated, corrupt or hostile: re-download it)"
    )


def _short(obj: Any, limit: int = 120) -> str:
  text = repr(obj)
  return text if len(text) <= limit else text[: limit - 3] + "..."
